//! PNG line charts (training curves, accuracy against a hyperparameter, with optional error
//! bars), drawn with plotters and an embedded DejaVu Sans font so they render anywhere.

use std::path::Path;
use std::sync::Once;

use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use crate::{Result, TrainError, write_via_temp};

/// One named curve.
#[derive(Clone, Debug, Default)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// `(x, y)` points in drawing order.
    pub points: Vec<(f64, f64)>,
    /// Optional ± error for each point, drawn as vertical bars.
    pub errors: Option<Vec<f64>>,
}

impl Series {
    /// A curve without error bars.
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Self {
            name: name.into(),
            points,
            errors: None,
        }
    }
}

/// A chart of one or more series.
#[derive(Clone, Debug, Default)]
pub struct LinePlot {
    /// Title above the chart.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// The curves.
    pub series: Vec<Series>,
}

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The embedded font is valid TrueType; failure would only mean text is not drawn.
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
    });
}

fn draw_error(e: impl std::fmt::Display) -> TrainError {
    TrainError::Invalid(format!("drawing a plot failed: {e}"))
}

/// The range covered by `values`, widened by 5 % (and made non-empty).
fn padded_range(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        return None;
    }
    let pad = if hi > lo {
        (hi - lo) * 0.05
    } else {
        lo.abs().max(1.0) * 0.05
    };
    Some((lo - pad, hi + pad))
}

/// Where a legend of `names` covers the fewest of `points` in a chart of ranges `x` and `y`:
/// a corner, or the middle of an edge, tried in that order (ties keep the earlier). The legend's
/// size is estimated from its text at the 14-pixel font of an 800×500 chart.
fn legend_position(
    names: &[&str],
    points: impl Iterator<Item = (f64, f64)> + Clone,
    x: (f64, f64),
    y: (f64, f64),
) -> SeriesLabelPosition {
    use SeriesLabelPosition::*;
    let chars = names.iter().map(|n| n.chars().count()).max().unwrap_or(0) as f64;
    // The plotting area is about 700 × 400 pixels.
    let width = ((45.0 + 7.5 * chars) / 700.0).min(1.0);
    let height = ((12.0 + 19.0 * names.len() as f64) / 400.0).min(1.0);
    let fraction = |v: f64, (lo, hi): (f64, f64)| (v - lo) / (hi - lo);
    let candidates = [
        (UpperRight, 1.0 - width, 1.0 - height),
        (LowerRight, 1.0 - width, 0.0),
        (UpperLeft, 0.0, 1.0 - height),
        (LowerLeft, 0.0, 0.0),
        (MiddleRight, 1.0 - width, 0.5 - height / 2.0),
        (MiddleLeft, 0.0, 0.5 - height / 2.0),
        (UpperMiddle, 0.5 - width / 2.0, 1.0 - height),
        (LowerMiddle, 0.5 - width / 2.0, 0.0),
    ];
    let mut best = (usize::MAX, UpperRight);
    for (position, left, bottom) in candidates {
        let covered = points
            .clone()
            .filter(|&(px, py)| {
                let (fx, fy) = (fraction(px, x), fraction(py, y));
                (left..=left + width).contains(&fx) && (bottom..=bottom + height).contains(&fy)
            })
            .count();
        if covered < best.0 {
            best = (covered, position);
        }
    }
    best.1
}

/// The drawing area of a chart with f64 axes.
type Chart<'a> = ChartContext<'a, BitMapBackend<'a>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

/// Titles and ranges of a chart's axes.
struct Axes<'a> {
    title: &'a str,
    x_label: &'a str,
    y_label: &'a str,
    x: (f64, f64),
    y: (f64, f64),
}

/// Draws an 800×500 PNG with a captioned, labelled mesh and lets `draw` add the data; the file
/// is written under a temporary name and renamed when complete.
fn render(
    path: &Path,
    axes: Axes<'_>,
    draw: impl FnOnce(&mut Chart<'_>) -> Result<()>,
) -> Result<()> {
    register_font();
    write_via_temp(path, ".png", |tmp| {
        let root = BitMapBackend::new(tmp, (800, 500)).into_drawing_area();
        root.fill(&WHITE).map_err(draw_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(axes.title, ("sans-serif", 20))
            .margin(14)
            .x_label_area_size(42)
            .y_label_area_size(64)
            .build_cartesian_2d(axes.x.0..axes.x.1, axes.y.0..axes.y.1)
            .map_err(draw_error)?;
        chart
            .configure_mesh()
            .x_desc(axes.x_label)
            .y_desc(axes.y_label)
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(draw_error)?;
        draw(&mut chart)?;
        root.present().map_err(draw_error)
    })
}

fn nothing_to_plot(path: &Path) -> TrainError {
    TrainError::Invalid(format!(
        "{}: nothing to plot (no finite points)",
        path.display()
    ))
}

impl LinePlot {
    /// Draws the chart as an 800×500 PNG at `path` (written atomically). Non-finite points
    /// are skipped; a chart with no finite point is an error.
    pub fn save_png(&self, path: &Path) -> Result<()> {
        let finite = |p: &&(f64, f64)| p.0.is_finite() && p.1.is_finite();
        let lows_highs = self.series.iter().flat_map(|s| {
            s.points.iter().enumerate().flat_map(move |(i, p)| {
                let e = s
                    .errors
                    .as_ref()
                    .and_then(|e| e.get(i))
                    .copied()
                    .unwrap_or(0.0);
                [p.1 - e, p.1 + e]
            })
        });
        let xs = self
            .series
            .iter()
            .flat_map(|s| s.points.iter())
            .filter(finite)
            .map(|p| p.0);
        let (Some(x), Some(y)) = (padded_range(xs), padded_range(lows_highs)) else {
            return Err(nothing_to_plot(path));
        };
        let names: Vec<&str> = self
            .series
            .iter()
            .filter(|s| !s.name.is_empty())
            .map(|s| s.name.as_str())
            .collect();
        let all_points = self.series.iter().flat_map(|s| s.points.iter().copied());
        let legend = legend_position(&names, all_points, x, y);
        let axes = Axes {
            title: &self.title,
            x_label: &self.x_label,
            y_label: &self.y_label,
            x,
            y,
        };
        render(path, axes, |chart| {
            for (i, s) in self.series.iter().enumerate() {
                let colour = Palette99::pick(i).to_rgba();
                let points: Vec<(f64, f64)> = s.points.iter().filter(finite).copied().collect();
                chart
                    .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))
                    .map_err(draw_error)?
                    .label(&s.name)
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2))
                    });
                // Markers only where they stay readable.
                if points.len() <= 60 {
                    chart
                        .draw_series(points.iter().map(|&p| Circle::new(p, 3, colour.filled())))
                        .map_err(draw_error)?;
                }
                if let Some(errors) = &s.errors {
                    chart
                        .draw_series(s.points.iter().zip(errors).filter(|(p, _)| finite(p)).map(
                            |(&(x, y), &e)| {
                                ErrorBar::new_vertical(x, y - e, y, y + e, colour.filled(), 8)
                            },
                        ))
                        .map_err(draw_error)?;
                }
            }
            if self.series.iter().any(|s| !s.name.is_empty()) {
                chart
                    .configure_series_labels()
                    .position(legend)
                    .background_style(WHITE.mix(0.85))
                    .border_style(BLACK)
                    .label_font(("sans-serif", 14))
                    .draw()
                    .map_err(draw_error)?;
            }
            Ok(())
        })
    }
}

/// A scatter chart whose points are coloured by a value (blue = low, red = high), e.g.
/// validation accuracy over learning rate and regularisation.
#[derive(Clone, Debug, Default)]
pub struct ScatterPlot {
    /// Title above the chart.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// `(x, y, value)` triples.
    pub points: Vec<(f64, f64, f64)>,
}

/// Blue→red colour for `t` in [0, 1].
fn heat(t: f64) -> RGBColor {
    let t = t.clamp(0.0, 1.0);
    RGBColor(
        (40.0 + 215.0 * t) as u8,
        (60.0 + 80.0 * (1.0 - (2.0 * t - 1.0).abs())) as u8,
        (255.0 * (1.0 - t)) as u8,
    )
}

impl ScatterPlot {
    /// Draws the chart as an 800×500 PNG at `path` (atomically); the title gains the value
    /// range shown by the colours.
    pub fn save_png(&self, path: &Path) -> Result<()> {
        let points: Vec<(f64, f64, f64)> = self
            .points
            .iter()
            .copied()
            .filter(|p| p.0.is_finite() && p.1.is_finite() && p.2.is_finite())
            .collect();
        let (Some(x), Some(y)) = (
            padded_range(points.iter().map(|p| p.0)),
            padded_range(points.iter().map(|p| p.1)),
        ) else {
            return Err(nothing_to_plot(path));
        };
        let (lo, hi) = points
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
                (a.min(p.2), b.max(p.2))
            });
        let title = format!("{} (blue {lo:.3} … red {hi:.3})", self.title);
        let axes = Axes {
            title: &title,
            x_label: &self.x_label,
            y_label: &self.y_label,
            x,
            y,
        };
        let span = (hi - lo).max(f64::MIN_POSITIVE);
        render(path, axes, |chart| {
            chart
                .draw_series(
                    points
                        .iter()
                        .map(|&(x, y, v)| Circle::new((x, y), 6, heat((v - lo) / span).filled())),
                )
                .map_err(draw_error)?;
            Ok(())
        })
    }
}

/// A square matrix drawn as coloured cells with their values, e.g. a confusion matrix whose
/// rows (true classes) are normalised to sum to 1.
#[derive(Clone, Debug, Default)]
pub struct MatrixPlot {
    /// Title above the chart.
    pub title: String,
    /// What the columns are (x axis).
    pub x_label: String,
    /// What the rows are (y axis).
    pub y_label: String,
    /// Names of the rows and columns, in order.
    pub labels: Vec<String>,
    /// `values[row][column]`, coloured on [0, 1] (blue → red) and printed as percentages.
    pub values: Vec<Vec<f64>>,
}

impl MatrixPlot {
    /// Draws the matrix as a PNG at `path` (atomically), row 0 at the top, 60 pixels a cell
    /// (at least 600×600).
    pub fn save_png(&self, path: &Path) -> Result<()> {
        let n = self.labels.len();
        if n == 0 || self.values.len() != n || self.values.iter().any(|r| r.len() != n) {
            return Err(TrainError::Invalid(format!(
                "{}: a matrix plot needs {n}×{n} values, one row and column per label",
                path.display()
            )));
        }
        register_font();
        let side = (n as u32 * 60 + 220).max(600);
        let label = |v: &SegmentValue<usize>, flip: bool| match v {
            SegmentValue::CenterOf(i) | SegmentValue::Exact(i) => {
                let i = if flip { n.saturating_sub(1 + i) } else { *i };
                self.labels.get(i).cloned().unwrap_or_default()
            }
            SegmentValue::Last => String::new(),
        };
        write_via_temp(path, ".png", |tmp| {
            let root = BitMapBackend::new(tmp, (side, side)).into_drawing_area();
            root.fill(&WHITE).map_err(draw_error)?;
            let mut chart = ChartBuilder::on(&root)
                .caption(&self.title, ("sans-serif", 20))
                .margin(14)
                .x_label_area_size(110)
                .y_label_area_size(110)
                .build_cartesian_2d((0..n - 1).into_segmented(), (0..n - 1).into_segmented())
                .map_err(draw_error)?;
            chart
                .configure_mesh()
                .disable_mesh()
                .x_desc(&self.x_label)
                .y_desc(&self.y_label)
                .x_labels(n)
                .y_labels(n)
                .x_label_formatter(&|v| label(v, false))
                .y_label_formatter(&|v| label(v, true))
                .x_label_style(
                    ("sans-serif", 13)
                        .into_font()
                        .transform(FontTransform::Rotate90),
                )
                .label_style(("sans-serif", 13))
                .draw()
                .map_err(draw_error)?;
            let cells = (0..n).flat_map(|row| (0..n).map(move |col| (row, col)));
            chart
                .draw_series(cells.clone().map(|(row, col)| {
                    let y = n - 1 - row;
                    Rectangle::new(
                        [
                            (SegmentValue::Exact(col), SegmentValue::Exact(y)),
                            (SegmentValue::Exact(col + 1), SegmentValue::Exact(y + 1)),
                        ],
                        heat(self.values[row][col]).filled(),
                    )
                }))
                .map_err(draw_error)?;
            chart
                .draw_series(cells.map(|(row, col)| {
                    let v = self.values[row][col];
                    Text::new(
                        if v.is_finite() {
                            format!("{:.0}", 100.0 * v)
                        } else {
                            String::new()
                        },
                        (
                            SegmentValue::CenterOf(col),
                            SegmentValue::CenterOf(n - 1 - row),
                        ),
                        ("sans-serif", 13).into_font().color(&WHITE),
                    )
                }))
                .map_err(draw_error)?;
            root.present().map_err(draw_error)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legends_go_where_they_hide_no_point() {
        let axes = ((0.0, 1.0), (0.0, 1.0));
        let names = ["a rather long legend entry (AP50 0.912, 4.71 img/s)"; 5];
        let at =
            |points: &[(f64, f64)]| legend_position(&names, points.iter().copied(), axes.0, axes.1);
        // Nothing in the way: the first choice.
        assert_eq!(at(&[(0.5, 0.5)]), SeriesLabelPosition::UpperRight);
        // A point in the upper right moves it to the lower right.
        assert_eq!(at(&[(0.95, 0.95)]), SeriesLabelPosition::LowerRight);
        // Points in every corner but the lower left.
        assert_eq!(
            at(&[(0.95, 0.95), (0.95, 0.05), (0.05, 0.95)]),
            SeriesLabelPosition::LowerLeft
        );
    }

    #[test]
    fn matrices_are_drawn_and_bad_shapes_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("confusion.png");
        let plot = MatrixPlot {
            title: "confusion".into(),
            x_label: "predicted".into(),
            y_label: "true".into(),
            labels: vec!["a".into(), "b".into(), "c".into()],
            values: vec![
                vec![1.0, 0.0, 0.0],
                vec![0.2, 0.8, 0.0],
                vec![0.0, 0.5, 0.5],
            ],
        };
        plot.save_png(&path).unwrap();
        let png = image::open(&path).unwrap().to_rgb8();
        assert_eq!((png.width(), png.height()), (600, 600));
        // Strongly red cells (value 1) and blue ones (value 0) were both drawn.
        let red = png.pixels().filter(|p| p.0[0] > 230 && p.0[2] < 40).count();
        let blue = png.pixels().filter(|p| p.0[2] > 230 && p.0[0] < 60).count();
        assert!(red > 1000 && blue > 1000, "red {red} blue {blue}");
        let bad = MatrixPlot {
            values: vec![vec![1.0]],
            ..plot
        };
        let err = bad
            .save_png(&dir.path().join("bad.png"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("3×3 values"), "{err}");
        assert!(!dir.path().join("bad.png").exists());
    }

    #[test]
    fn writes_a_png_with_curves_and_error_bars() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("curve.png");
        let plot = LinePlot {
            title: "accuracy".into(),
            x_label: "epoch".into(),
            y_label: "acc".into(),
            series: vec![
                Series::new("train", vec![(1.0, 0.5), (2.0, 0.7), (3.0, f64::NAN)]),
                Series {
                    name: "val".into(),
                    points: vec![(1.0, 0.4), (2.0, 0.6)],
                    errors: Some(vec![0.05, 0.02]),
                },
            ],
        };
        plot.save_png(&path).unwrap();
        let png = image::open(&path).unwrap().to_rgb8();
        assert_eq!((png.width(), png.height()), (800, 500));
        // Some pixels are neither white nor black: the coloured curves were drawn.
        let coloured = png
            .pixels()
            .filter(|p| {
                let [r, g, b] = p.0;
                r.max(g).max(b) - r.min(g).min(b) > 80
            })
            .count();
        assert!(coloured > 200, "only {coloured} coloured pixels");
        let scatter = ScatterPlot {
            title: "search".into(),
            x_label: "log10 lr".into(),
            y_label: "log10 reg".into(),
            points: vec![(-7.0, 4.0, 0.3), (-6.0, 3.0, 0.4), (-5.0, 5.0, f64::NAN)],
        };
        scatter.save_png(&dir.path().join("s.png")).unwrap();
        assert_eq!(image::open(dir.path().join("s.png")).unwrap().width(), 800);
        let empty = LinePlot::default();
        assert!(empty.save_png(&dir.path().join("e.png")).is_err());
        assert!(!dir.path().join("e.png").exists());
    }
}

//! Pictures of segmentations: label maps in the classes' colours, the same laid over the photo,
//! a grid of photo | ground truth | prediction, and the confusion matrix.

use std::path::Path;

use kiln_data::augment::Mask;
use kiln_data::{GridOptions, Image, save_grid};
use kiln_train::plot::MatrixPlot;

use crate::Result;
use crate::data::ClassList;
use crate::metrics::ConfusionMatrix;

/// A label map (class ids; anything else black) in the classes' colours, as an RGB image.
pub fn colour_labels(labels: &[u8], width: usize, height: usize, classes: &ClassList) -> Image {
    let mut data = Vec::with_capacity(width * height * 3);
    for &id in &labels[..width * height] {
        let colour = classes
            .classes
            .get(usize::from(id))
            .map_or([0, 0, 0], |c| c.colour);
        data.extend_from_slice(&colour);
    }
    Image {
        width,
        height,
        channels: 3,
        data,
    }
}

/// `photo` with the label map's colours laid over it at `opacity` (unlabelled pixels keep the
/// photo).
pub fn overlay(photo: &Image, labels: &[u8], classes: &ClassList, opacity: f32) -> Image {
    let rgb = photo.to_rgb();
    let mut data = rgb.data.clone();
    for (i, &id) in labels.iter().enumerate().take(rgb.width * rgb.height) {
        if let Some(class) = classes.classes.get(usize::from(id)) {
            for c in 0..3 {
                let p = &mut data[i * 3 + c];
                *p = (f32::from(*p) * (1.0 - opacity) + f32::from(class.colour[c]) * opacity)
                    .round() as u8;
            }
        }
    }
    Image { data, ..rgb }
}

/// One picture row: the photo, the ground truth over it, the prediction over it.
#[derive(Clone, Debug)]
pub struct PredictionRow {
    /// The photo.
    pub photo: Image,
    /// Its label (the photo's size).
    pub truth: Mask,
    /// The predicted class of each pixel.
    pub predicted: Vec<u8>,
}

/// Writes `rows` as `predictions.png`-style grid at `path`: photo | truth | prediction.
pub fn save_predictions(rows: &[PredictionRow], classes: &ClassList, path: &Path) -> Result<()> {
    let grid: Vec<Vec<Image>> = rows
        .iter()
        .map(|r| {
            vec![
                r.photo.to_rgb(),
                overlay(&r.photo, &r.truth.data, classes, 0.6),
                overlay(&r.photo, &r.predicted, classes, 0.6),
            ]
        })
        .collect();
    let options = GridOptions {
        scale: 1,
        gap: 4,
        background: 255,
    };
    Ok(save_grid(&grid, options, path)?)
}

/// Writes the confusion matrix, each true class's row as shares of its pixels, at `path`.
pub fn save_confusion(
    matrix: &ConfusionMatrix,
    classes: &ClassList,
    title: &str,
    path: &Path,
) -> Result<()> {
    let k = matrix.classes();
    let values = (0..k)
        .map(|t| {
            let total: u64 = (0..k).map(|p| matrix.count(t, p)).sum();
            (0..k)
                .map(|p| {
                    if total == 0 {
                        f64::NAN
                    } else {
                        matrix.count(t, p) as f64 / total as f64
                    }
                })
                .collect()
        })
        .collect();
    MatrixPlot {
        title: title.to_string(),
        x_label: "predicted class".into(),
        y_label: "true class".into(),
        labels: classes.classes.iter().map(|c| c.name.clone()).collect(),
        values,
    }
    .save_png(path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_coloured_and_laid_over_the_photo() {
        let classes = ClassList::camvid();
        let coloured = colour_labels(&[3, 11, Mask::IGNORE], 3, 1, &classes);
        // Road's colour, then black for void and for ignored.
        assert_eq!(coloured.data, vec![128, 64, 128, 0, 0, 0, 0, 0, 0]);
        let photo = Image::filled(2, 1, 3, 100);
        let over = overlay(&photo, &[0, Mask::IGNORE], &classes, 0.5);
        // Sky (128, 128, 128) half over grey 100 → 114; the unlabelled pixel stays.
        assert_eq!(over.data, vec![114, 114, 114, 100, 100, 100]);
    }

    #[test]
    fn prediction_grids_and_confusion_matrices_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let classes = ClassList::camvid();
        let truth = Mask {
            width: 4,
            height: 2,
            data: vec![0, 1, 2, 3, 4, 5, 6, 7],
        };
        let rows = vec![PredictionRow {
            photo: Image::filled(4, 2, 3, 50),
            truth: truth.clone(),
            predicted: vec![0, 1, 2, 3, 4, 5, 6, 0],
        }];
        let path = dir.path().join("predictions.png");
        save_predictions(&rows, &classes, &path).unwrap();
        let png = image::open(&path).unwrap();
        assert_eq!((png.width(), png.height()), (3 * 4 + 4 * 4, 2 + 2 * 4));
        let mut matrix = ConfusionMatrix::new(classes.len());
        matrix.add(&truth, &rows[0].predicted);
        let path = dir.path().join("confusion.png");
        save_confusion(&matrix, &classes, "val", &path).unwrap();
        assert!(image::open(&path).unwrap().width() >= 600);
    }
}

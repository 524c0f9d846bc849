//! Geometric transforms: flips, padded random crops, random resized crops and resizes, each
//! moving boxes and masks with the pixels.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{BoundingBox, Mask, Position, Sample, Target, Transform};
use crate::Image;

/// How pixels outside the image are filled when a crop hangs over the border.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PaddingMode {
    /// Zeros (masks get [`Mask::IGNORE`]).
    #[default]
    Zero,
    /// Mirror without repeating the edge pixel (`reflect` in PyTorch and NumPy).
    Reflect,
    /// Repeat the edge pixel.
    Edge,
}

/// Where source coordinate `i` (possibly outside `0..n`) reads from, or `None` for the fill.
fn source_index(i: isize, n: usize, mode: PaddingMode) -> Option<usize> {
    let n = n as isize;
    if (0..n).contains(&i) {
        return Some(i as usize);
    }
    match mode {
        PaddingMode::Zero => None,
        PaddingMode::Edge => Some(i.clamp(0, n - 1) as usize),
        PaddingMode::Reflect => {
            if n == 1 {
                return Some(0);
            }
            let period = 2 * (n - 1);
            let m = i.rem_euclid(period);
            Some(if m < n { m } else { period - m } as usize)
        }
    }
}

/// Copies the `w`×`h` window at `(x0, y0)` of a `width`×`height` buffer with `channels` values
/// per pixel, reading outside pixels per `mode` and writing `fill` where it has none.
#[allow(clippy::too_many_arguments)]
fn crop_buffer(
    data: &[u8],
    width: usize,
    height: usize,
    channels: usize,
    x0: isize,
    y0: isize,
    w: usize,
    h: usize,
    mode: PaddingMode,
    fill: u8,
) -> Vec<u8> {
    let cols: Vec<Option<usize>> = (0..w)
        .map(|x| source_index(x0 + x as isize, width, mode))
        .collect();
    let mut out = vec![fill; w * h * channels];
    for (y, row) in out.chunks_exact_mut(w * channels).enumerate() {
        let Some(sy) = source_index(y0 + y as isize, height, mode) else {
            continue;
        };
        let src_row = &data[sy * width * channels..(sy + 1) * width * channels];
        for (x, col) in cols.iter().enumerate() {
            if let Some(sx) = col {
                row[x * channels..(x + 1) * channels]
                    .copy_from_slice(&src_row[sx * channels..(sx + 1) * channels]);
            }
        }
    }
    out
}

/// Moves boxes into a window at `(x0, y0)` of size `w`×`h`, scales them by `(sx, sy)`, clips
/// them to the result, and drops those left less than one pixel wide or high.
fn transform_boxes(
    boxes: Vec<BoundingBox>,
    labels: Vec<usize>,
    window: (f32, f32, f32, f32),
    scale: (f32, f32),
) -> Target {
    let (boxes, labels, _) = move_boxes(boxes, labels, window, scale);
    Target::Boxes { boxes, labels }
}

/// [`transform_boxes`] for instances: the kept boxes, labels and the masks of the kept
/// objects, each mask transformed by `mask_of`.
fn transform_instances(
    boxes: Vec<BoundingBox>,
    labels: Vec<usize>,
    masks: Vec<Mask>,
    window: (f32, f32, f32, f32),
    scale: (f32, f32),
    mask_of: impl Fn(&Mask) -> Mask,
) -> Target {
    let (boxes, labels, kept) = move_boxes(boxes, labels, window, scale);
    Target::Instances {
        boxes,
        labels,
        masks: kept.iter().map(|&i| mask_of(&masks[i])).collect(),
    }
}

/// The boxes and labels [`transform_boxes`] keeps, and the indices of the kept ones.
fn move_boxes(
    boxes: Vec<BoundingBox>,
    labels: Vec<usize>,
    (x0, y0, w, h): (f32, f32, f32, f32),
    (sx, sy): (f32, f32),
) -> (Vec<BoundingBox>, Vec<usize>, Vec<usize>) {
    let mut kept_boxes = Vec::with_capacity(boxes.len());
    let mut kept_labels = Vec::with_capacity(labels.len());
    let mut kept = Vec::with_capacity(boxes.len());
    for (i, (b, l)) in boxes.into_iter().zip(labels).enumerate() {
        let moved = BoundingBox {
            x1: (b.x1 - x0).clamp(0.0, w) * sx,
            y1: (b.y1 - y0).clamp(0.0, h) * sy,
            x2: (b.x2 - x0).clamp(0.0, w) * sx,
            y2: (b.y2 - y0).clamp(0.0, h) * sy,
        };
        if moved.width() >= 1.0 && moved.height() >= 1.0 {
            kept_boxes.push(moved);
            kept_labels.push(l);
            kept.push(i);
        }
    }
    (kept_boxes, kept_labels, kept)
}

/// Crops the window `(x0, y0, w, h)` out of a sample (window may hang over the border).
pub(super) fn crop_sample(
    sample: Sample,
    x0: isize,
    y0: isize,
    w: usize,
    h: usize,
    mode: PaddingMode,
) -> Sample {
    let img = &sample.image;
    let image = Image {
        width: w,
        height: h,
        channels: img.channels,
        data: crop_buffer(
            &img.data,
            img.width,
            img.height,
            img.channels,
            x0,
            y0,
            w,
            h,
            mode,
            0,
        ),
    };
    let target = match sample.target {
        Target::Label(l) => Target::Label(l),
        Target::Boxes { boxes, labels } => transform_boxes(
            boxes,
            labels,
            (x0 as f32, y0 as f32, w as f32, h as f32),
            (1.0, 1.0),
        ),
        Target::Mask(m) => Target::Mask(crop_mask(&m, (x0, y0, w, h), mode, Mask::IGNORE)),
        Target::Instances {
            boxes,
            labels,
            masks,
        } => transform_instances(
            boxes,
            labels,
            masks,
            (x0 as f32, y0 as f32, w as f32, h as f32),
            (1.0, 1.0),
            |m| crop_mask(m, (x0, y0, w, h), mode, 0),
        ),
    };
    Sample { image, target }
}

/// The `w`×`h` window at `(x0, y0)` of a mask, `fill` where the window has no pixel.
fn crop_mask(
    m: &Mask,
    (x0, y0, w, h): (isize, isize, usize, usize),
    mode: PaddingMode,
    fill: u8,
) -> Mask {
    Mask {
        width: w,
        height: h,
        data: crop_buffer(&m.data, m.width, m.height, 1, x0, y0, w, h, mode, fill),
    }
}

/// A mask's window `(x0, y0, cw, ch)` resampled to `w`×`h` by nearest pixel.
fn resample_mask(m: &Mask, (x0, y0, cw, ch): (f32, f32, f32, f32), w: usize, h: usize) -> Mask {
    let (sx, sy) = (cw / w as f32, ch / h as f32);
    let nearest = |o: usize, scale: f32, origin: f32, n: usize| {
        ((origin + (o as f32 + 0.5) * scale).floor().max(0.0) as usize).min(n - 1)
    };
    let cols: Vec<usize> = (0..w).map(|x| nearest(x, sx, x0, m.width)).collect();
    let mut out = Vec::with_capacity(w * h);
    for y in 0..h {
        let sy_ = nearest(y, sy, y0, m.height);
        out.extend(cols.iter().map(|&sx_| m.data[sy_ * m.width + sx_]));
    }
    Mask {
        width: w,
        height: h,
        data: out,
    }
}

/// Resamples the window `(x0, y0, cw, ch)` of a sample to `w`×`h`: bilinear for the image
/// (pixel centres aligned, like `align_corners = false`), nearest for the mask.
fn resize_window(
    sample: Sample,
    (x0, y0, cw, ch): (f32, f32, f32, f32),
    w: usize,
    h: usize,
) -> Sample {
    let img = &sample.image;
    let (sx, sy) = (cw / w as f32, ch / h as f32);
    let c = img.channels;
    let src_coord = |o: usize, scale: f32, origin: f32, n: usize| -> (usize, usize, f32) {
        let s = (origin + (o as f32 + 0.5) * scale - 0.5).clamp(0.0, (n - 1) as f32);
        let lo = s.floor() as usize;
        (lo, (lo + 1).min(n - 1), s - lo as f32)
    };
    let xs: Vec<_> = (0..w).map(|x| src_coord(x, sx, x0, img.width)).collect();
    let mut data = vec![0u8; w * h * c];
    for (y, row) in data.chunks_exact_mut(w * c).enumerate() {
        let (y_lo, y_hi, fy) = src_coord(y, sy, y0, img.height);
        let top = &img.data[y_lo * img.width * c..(y_lo + 1) * img.width * c];
        let bottom = &img.data[y_hi * img.width * c..(y_hi + 1) * img.width * c];
        for (x, &(x_lo, x_hi, fx)) in xs.iter().enumerate() {
            for k in 0..c {
                let t = top[x_lo * c + k] as f32 * (1.0 - fx) + top[x_hi * c + k] as f32 * fx;
                let b = bottom[x_lo * c + k] as f32 * (1.0 - fx) + bottom[x_hi * c + k] as f32 * fx;
                row[x * c + k] = (t * (1.0 - fy) + b * fy).round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    let image = Image {
        width: w,
        height: h,
        channels: c,
        data,
    };
    let target = match sample.target {
        Target::Label(l) => Target::Label(l),
        Target::Boxes { boxes, labels } => {
            transform_boxes(boxes, labels, (x0, y0, cw, ch), (1.0 / sx, 1.0 / sy))
        }
        Target::Mask(m) => Target::Mask(resample_mask(&m, (x0, y0, cw, ch), w, h)),
        Target::Instances {
            boxes,
            labels,
            masks,
        } => transform_instances(
            boxes,
            labels,
            masks,
            (x0, y0, cw, ch),
            (1.0 / sx, 1.0 / sy),
            |m| resample_mask(m, (x0, y0, cw, ch), w, h),
        ),
    };
    Sample { image, target }
}

/// Mirrors a mask left–right.
fn flip_mask(m: &mut Mask) {
    for row in m.data.chunks_exact_mut(m.width.max(1)) {
        row.reverse();
    }
}

/// Mirrors left–right with probability `p`.
#[derive(Clone, Debug)]
pub struct HorizontalFlip {
    /// Probability of flipping.
    pub p: f32,
}

impl HorizontalFlip {
    /// Mirrors a sample unconditionally.
    pub fn flip(mut sample: Sample) -> Sample {
        let img = &mut sample.image;
        let (w, c) = (img.width, img.channels);
        for row in img.data.chunks_exact_mut(w * c) {
            for x in 0..w / 2 {
                for k in 0..c {
                    row.swap(x * c + k, (w - 1 - x) * c + k);
                }
            }
        }
        match &mut sample.target {
            Target::Label(_) => {}
            Target::Boxes { boxes, .. } => {
                let width = w as f32;
                for b in boxes {
                    (b.x1, b.x2) = (width - b.x2, width - b.x1);
                }
            }
            Target::Mask(m) => flip_mask(m),
            Target::Instances { boxes, masks, .. } => {
                let width = w as f32;
                for b in boxes {
                    (b.x1, b.x2) = (width - b.x2, width - b.x1);
                }
                masks.iter_mut().for_each(flip_mask);
            }
        }
        sample
    }
}

impl Transform for HorizontalFlip {
    fn apply(&self, sample: Sample, rng: &mut ChaCha8Rng) -> Sample {
        if rng.random::<f32>() < self.p {
            Self::flip(sample)
        } else {
            sample
        }
    }
}

/// Mirrors an image in alternate epochs, starting from a random side per image (see
/// [`super::TransformConfig::AlternatingFlip`]). Without a position (plain [`Transform::apply`])
/// it flips with probability ½.
#[derive(Clone, Copy, Debug)]
pub struct AlternatingFlip;

impl AlternatingFlip {
    /// Whether the item `index` is mirrored in `epoch` under `seed`.
    pub fn flips(seed: u64, epoch: u64, index: u64) -> bool {
        // SplitMix64 of (seed, index): a fixed coin per image.
        let mut z = seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        ((z & 1) == 1) ^ (epoch % 2 == 1)
    }
}

impl Transform for AlternatingFlip {
    fn apply(&self, sample: Sample, rng: &mut ChaCha8Rng) -> Sample {
        HorizontalFlip { p: 0.5 }.apply(sample, rng)
    }

    fn apply_at(&self, sample: Sample, _rng: &mut ChaCha8Rng, at: Position) -> Sample {
        if Self::flips(at.seed, at.epoch, at.index) {
            HorizontalFlip::flip(sample)
        } else {
            sample
        }
    }
}

/// Pads by `padding` on every side and crops `size`×`size` at a uniformly random position.
#[derive(Clone, Debug)]
pub struct RandomCrop {
    /// Output side.
    pub size: usize,
    /// Padding on each side.
    pub padding: usize,
    /// How padding is filled.
    pub padding_mode: PaddingMode,
}

impl Transform for RandomCrop {
    fn apply(&self, sample: Sample, rng: &mut ChaCha8Rng) -> Sample {
        let pad = self.padding as isize;
        let span = |n: usize| (n as i64 + 2 * pad as i64 - self.size as i64).max(0);
        let x0 = rng.random_range(0..=span(sample.image.width)) as isize - pad;
        let y0 = rng.random_range(0..=span(sample.image.height)) as isize - pad;
        crop_sample(sample, x0, y0, self.size, self.size, self.padding_mode)
    }
}

/// torchvision's `RandomResizedCrop`: a crop with random area fraction and aspect ratio,
/// resized to `size`×`size`; after ten failed draws, the largest central crop that fits.
#[derive(Clone, Debug)]
pub struct RandomResizedCrop {
    /// Output side.
    pub size: usize,
    /// Area fraction range.
    pub scale: [f32; 2],
    /// Aspect ratio (width / height) range.
    pub ratio: [f32; 2],
    /// Boxes keeping less than this fraction of their area inside the crop are dropped.
    pub min_visible: f32,
}

/// Drops the boxes of `sample` that keep less than `min_visible` of their area inside the
/// window `(x0, y0, w, h)`.
pub(super) fn drop_hidden_boxes(
    sample: Sample,
    (x0, y0, w, h): (f32, f32, f32, f32),
    min_visible: f32,
) -> Sample {
    let visible = |b: &BoundingBox| {
        let area = b.width() * b.height();
        let iw = (b.x2.min(x0 + w) - b.x1.max(x0)).max(0.0);
        let ih = (b.y2.min(y0 + h) - b.y1.max(y0)).max(0.0);
        area > 0.0 && iw * ih >= min_visible * area
    };
    let target = match sample.target {
        Target::Boxes { boxes, labels } => {
            let (boxes, labels) = boxes
                .into_iter()
                .zip(labels)
                .filter(|(b, _)| visible(b))
                .unzip();
            Target::Boxes { boxes, labels }
        }
        Target::Instances {
            boxes,
            labels,
            masks,
        } => {
            let kept: Vec<(BoundingBox, usize, Mask)> = boxes
                .into_iter()
                .zip(labels)
                .zip(masks)
                .filter(|((b, _), _)| visible(b))
                .map(|((b, l), m)| (b, l, m))
                .collect();
            Target::Instances {
                boxes: kept.iter().map(|k| k.0).collect(),
                labels: kept.iter().map(|k| k.1).collect(),
                masks: kept.into_iter().map(|k| k.2).collect(),
            }
        }
        other => other,
    };
    Sample {
        image: sample.image,
        target,
    }
}

impl RandomResizedCrop {
    fn window(&self, width: usize, height: usize, rng: &mut ChaCha8Rng) -> (f32, f32, f32, f32) {
        let (wf, hf) = (width as f32, height as f32);
        let area = wf * hf;
        let (log_lo, log_hi) = (self.ratio[0].ln(), self.ratio[1].ln());
        for _ in 0..10 {
            let target = area * rng.random_range(self.scale[0]..=self.scale[1]);
            let aspect = rng.random_range(log_lo..=log_hi).exp();
            let cw = (target * aspect).sqrt().round();
            let ch = (target / aspect).sqrt().round();
            if cw >= 1.0 && ch >= 1.0 && cw <= wf && ch <= hf {
                let x0 = rng.random_range(0..=(width - cw as usize)) as f32;
                let y0 = rng.random_range(0..=(height - ch as usize)) as f32;
                return (x0, y0, cw, ch);
            }
        }
        let aspect = wf / hf;
        let (cw, ch) = if aspect < self.ratio[0] {
            (wf, (wf / self.ratio[0]).round())
        } else if aspect > self.ratio[1] {
            ((hf * self.ratio[1]).round(), hf)
        } else {
            (wf, hf)
        };
        (((wf - cw) / 2.0).floor(), ((hf - ch) / 2.0).floor(), cw, ch)
    }
}

impl Transform for RandomResizedCrop {
    fn apply(&self, sample: Sample, rng: &mut ChaCha8Rng) -> Sample {
        let window = self.window(sample.image.width, sample.image.height, rng);
        let sample = if self.min_visible > 0.0 {
            drop_hidden_boxes(sample, window, self.min_visible)
        } else {
            sample
        };
        resize_window(sample, window, self.size, self.size)
    }
}

/// Resizes a sample to `width`×`height` (bilinear image with pixel centres aligned, nearest
/// mask, boxes scaled alike): for detectors whose input keeps the image's aspect ratio.
pub fn resize_sample(sample: Sample, width: usize, height: usize) -> Sample {
    let (w, h) = (sample.image.width as f32, sample.image.height as f32);
    resize_window(sample, (0.0, 0.0, w, h), width.max(1), height.max(1))
}

/// Resizes to `size`×`size`.
#[derive(Clone, Debug)]
pub struct Resize {
    /// Output side.
    pub size: usize,
}

impl Transform for Resize {
    fn apply(&self, sample: Sample, _rng: &mut ChaCha8Rng) -> Sample {
        let (w, h) = (sample.image.width as f32, sample.image.height as f32);
        resize_window(sample, (0.0, 0.0, w, h), self.size, self.size)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::gradient_image;
    use super::*;
    use rand::SeedableRng;

    fn rng(seed: u64) -> ChaCha8Rng {
        ChaCha8Rng::seed_from_u64(seed)
    }

    /// A mask whose value at (x, y) is x + 10 y, for checking alignment with the image.
    /// An instance sample: a 10×8 image, one object whose mask is the rectangle x 2..5,
    /// y 1..4 (box (2, 1, 5, 4)) and one whose mask is x 7..10, y 5..8.
    fn instances() -> Sample {
        let rect = |x0: usize, y0: usize, x1: usize, y1: usize| {
            let mut data = vec![0u8; 80];
            for y in y0..y1 {
                data[y * 10 + x0..y * 10 + x1].fill(1);
            }
            Mask {
                width: 10,
                height: 8,
                data,
            }
        };
        let bb = |x1: f32, y1: f32, x2: f32, y2: f32| BoundingBox { x1, y1, x2, y2 };
        Sample {
            image: gradient_image(10, 8),
            target: Target::Instances {
                boxes: vec![bb(2.0, 1.0, 5.0, 4.0), bb(7.0, 5.0, 10.0, 8.0)],
                labels: vec![3, 4],
                masks: vec![rect(2, 1, 5, 4), rect(7, 5, 10, 8)],
            },
        }
    }

    /// The tight box of a 0/1 mask, `(x1, y1, x2, y2)`.
    fn tight(m: &Mask) -> (usize, usize, usize, usize) {
        let on: Vec<(usize, usize)> = (0..m.height)
            .flat_map(|y| (0..m.width).map(move |x| (x, y)))
            .filter(|&(x, y)| m.data[y * m.width + x] == 1)
            .collect();
        let xs = on.iter().map(|p| p.0);
        let ys = on.iter().map(|p| p.1);
        (
            xs.clone().min().unwrap(),
            ys.clone().min().unwrap(),
            xs.max().unwrap() + 1,
            ys.max().unwrap() + 1,
        )
    }

    #[test]
    fn instance_masks_move_with_their_boxes() {
        let check = |s: &Sample| {
            let Target::Instances {
                boxes,
                labels,
                masks,
            } = &s.target
            else {
                panic!("instances stay instances");
            };
            assert_eq!(boxes.len(), masks.len());
            assert_eq!(boxes.len(), labels.len());
            for (b, m) in boxes.iter().zip(masks) {
                assert_eq!((m.width, m.height), (s.image.width, s.image.height));
                let (x1, y1, x2, y2) = tight(m);
                assert_eq!(
                    (x1 as f32, y1 as f32, x2 as f32, y2 as f32),
                    (b.x1, b.y1, b.x2, b.y2)
                );
            }
            labels.clone()
        };
        // Flip: both masks mirrored with their boxes.
        assert_eq!(check(&HorizontalFlip::flip(instances())), vec![3, 4]);
        // Resize ×2: masks by nearest pixel, boxes scaled.
        assert_eq!(check(&resize_sample(instances(), 20, 16)), vec![3, 4]);
        // A crop that cuts the second object out: its mask goes with its box.
        let cropped = crop_sample(instances(), 1, 0, 6, 5, PaddingMode::Zero);
        assert_eq!(check(&cropped), vec![3]);
        // Padding beyond the image is background in instance masks.
        let padded = crop_sample(instances(), -2, -2, 14, 12, PaddingMode::Zero);
        let Target::Instances { masks, .. } = &padded.target else {
            unreachable!()
        };
        assert!(masks[0].data.iter().all(|&v| v <= 1));
        assert_eq!(check(&padded), vec![3, 4]);
    }

    fn coordinate_mask(w: usize, h: usize) -> Mask {
        Mask {
            width: w,
            height: h,
            data: (0..h)
                .flat_map(|y| (0..w).map(move |x| (x + 10 * y) as u8))
                .collect(),
        }
    }

    #[test]
    fn random_resized_crop_drops_boxes_mostly_cut_away() {
        // A 10×10 box in the top-left corner and one in the bottom-right of a 40×40 image;
        // every crop that cuts a box to under half its area must drop it, others keep it.
        let boxes = vec![
            BoundingBox {
                x1: 0.0,
                y1: 0.0,
                x2: 10.0,
                y2: 10.0,
            },
            BoundingBox {
                x1: 30.0,
                y1: 30.0,
                x2: 40.0,
                y2: 40.0,
            },
        ];
        let rrc = RandomResizedCrop {
            size: 20,
            scale: [0.2, 0.6],
            ratio: [1.0, 1.0],
            min_visible: 0.5,
        };
        let (mut kept, mut dropped) = (0, 0);
        for seed in 0..40 {
            let mut r = rng(seed);
            let window = rrc.window(40, 40, &mut r.clone());
            let s = Sample {
                image: gradient_image(40, 40),
                target: Target::Boxes {
                    boxes: boxes.clone(),
                    labels: vec![0, 1],
                },
            };
            let Target::Boxes { labels, .. } = rrc.apply(s, &mut r).target else {
                panic!("boxes stay boxes");
            };
            let (x0, y0, w, h) = window;
            for (b, l) in boxes.iter().zip([0usize, 1]) {
                let iw = (b.x2.min(x0 + w) - b.x1.max(x0)).max(0.0);
                let ih = (b.y2.min(y0 + h) - b.y1.max(y0)).max(0.0);
                let visible = iw * ih / 100.0;
                assert_eq!(labels.contains(&l), visible >= 0.5, "seed {seed}, box {l}");
                if visible >= 0.5 {
                    kept += 1
                } else {
                    dropped += 1
                }
            }
        }
        assert!(
            kept > 0 && dropped > 0,
            "both cases occur ({kept} kept, {dropped} dropped)"
        );
    }

    #[test]
    fn flip_twice_is_identity_and_moves_boxes_and_masks() {
        let sample = Sample {
            image: gradient_image(5, 4),
            target: Target::Boxes {
                boxes: vec![BoundingBox {
                    x1: 1.0,
                    y1: 0.0,
                    x2: 3.0,
                    y2: 2.0,
                }],
                labels: vec![2],
            },
        };
        let once = HorizontalFlip::flip(sample.clone());
        assert_eq!(once.image.pixel(0, 1), sample.image.pixel(4, 1));
        let Target::Boxes { boxes, .. } = &once.target else {
            panic!()
        };
        assert_eq!(
            boxes[0],
            BoundingBox {
                x1: 2.0,
                y1: 0.0,
                x2: 4.0,
                y2: 2.0
            }
        );
        assert_eq!(HorizontalFlip::flip(once), sample);
        // Alternating flip: each image flips in exactly one of two consecutive epochs, and
        // about half the images flip in any one epoch.
        let flips: Vec<bool> = (0..1000).map(|i| AlternatingFlip::flips(7, 4, i)).collect();
        for (i, &f) in flips.iter().enumerate() {
            assert_ne!(f, AlternatingFlip::flips(7, 5, i as u64));
            assert_eq!(f, AlternatingFlip::flips(7, 6, i as u64));
        }
        let count = flips.iter().filter(|&&f| f).count();
        assert!((450..550).contains(&count), "{count}");

        let masked = Sample {
            image: gradient_image(5, 4),
            target: Target::Mask(coordinate_mask(5, 4)),
        };
        let flipped = HorizontalFlip::flip(masked.clone());
        let Target::Mask(m) = &flipped.target else {
            panic!()
        };
        assert_eq!(m.data[0], 4);
        assert_eq!(HorizontalFlip::flip(flipped), masked);
    }

    #[test]
    fn flip_probability_is_respected() {
        let t = HorizontalFlip { p: 0.0 };
        let s = Sample {
            image: gradient_image(4, 4),
            target: Target::Label(0),
        };
        assert_eq!(t.apply(s.clone(), &mut rng(1)), s);
        let t = HorizontalFlip { p: 1.0 };
        assert_eq!(t.apply(s.clone(), &mut rng(1)), HorizontalFlip::flip(s));
    }

    #[test]
    fn padded_crop_translates_and_keeps_masks_aligned() {
        let image = gradient_image(8, 8);
        let crop = RandomCrop {
            size: 8,
            padding: 2,
            padding_mode: PaddingMode::Zero,
        };
        for seed in 0..20 {
            let s = Sample {
                image: image.clone(),
                target: Target::Mask(coordinate_mask(8, 8)),
            };
            let out = crop.apply(s, &mut rng(seed));
            let Target::Mask(m) = &out.target else {
                panic!()
            };
            assert_eq!((out.image.width, m.width), (8, 8));
            for y in 0..8 {
                for x in 0..8 {
                    let v = m.data[y * 8 + x];
                    if v == Mask::IGNORE {
                        assert_eq!(out.image.pixel(x, y), &[0, 0, 0]);
                    } else {
                        let (sx, sy) = ((v % 10) as usize, (v / 10) as usize);
                        assert_eq!(out.image.pixel(x, y), image.pixel(sx, sy));
                    }
                }
            }
        }
    }

    #[test]
    fn reflect_and_edge_padding_read_inside_the_image() {
        assert_eq!(source_index(-1, 5, PaddingMode::Reflect), Some(1));
        assert_eq!(source_index(5, 5, PaddingMode::Reflect), Some(3));
        assert_eq!(source_index(-2, 5, PaddingMode::Edge), Some(0));
        assert_eq!(source_index(-1, 5, PaddingMode::Zero), None);
        let out = crop_buffer(&[1, 2, 3], 3, 1, 1, -2, 0, 7, 1, PaddingMode::Reflect, 0);
        assert_eq!(out, vec![3, 2, 1, 2, 3, 2, 1]);
    }

    #[test]
    fn crops_keep_boxes_inside_and_drop_vanished_ones() {
        let boxes = vec![
            BoundingBox {
                x1: 2.0,
                y1: 2.0,
                x2: 14.0,
                y2: 10.0,
            },
            BoundingBox {
                x1: 30.0,
                y1: 30.0,
                x2: 31.5,
                y2: 31.5,
            },
        ];
        let crop = RandomCrop {
            size: 16,
            padding: 0,
            padding_mode: PaddingMode::Zero,
        };
        let rrc = RandomResizedCrop {
            size: 20,
            scale: [0.2, 1.0],
            ratio: [0.75, 1.33],
            min_visible: 0.0,
        };
        let mut saw_drop = false;
        for seed in 0..50 {
            for t in [&crop as &dyn Transform, &rrc] {
                let s = Sample {
                    image: gradient_image(32, 32),
                    target: Target::Boxes {
                        boxes: boxes.clone(),
                        labels: vec![1, 2],
                    },
                };
                let out = t.apply(s, &mut rng(seed));
                let Target::Boxes { boxes: b, labels } = &out.target else {
                    panic!()
                };
                assert_eq!(b.len(), labels.len());
                saw_drop |= b.len() < 2;
                for bb in b {
                    assert!(bb.x1 >= 0.0 && bb.y1 >= 0.0);
                    assert!(bb.x2 <= out.image.width as f32 && bb.y2 <= out.image.height as f32);
                    assert!(bb.width() >= 1.0 && bb.height() >= 1.0);
                }
            }
        }
        assert!(saw_drop, "the corner box never left a crop");
    }

    #[test]
    fn resized_crop_moves_boxes_with_the_pixels() {
        // A white rectangle on black; its box must still frame the white pixels after the crop.
        let mut image = Image::filled(40, 30, 3, 0);
        for y in 10..20 {
            for x in 8..24 {
                let at = (y * 40 + x) * 3;
                image.data[at..at + 3].copy_from_slice(&[255, 255, 255]);
            }
        }
        let rrc = RandomResizedCrop {
            size: 32,
            scale: [0.6, 1.0],
            ratio: [0.75, 1.33],
            min_visible: 0.0,
        };
        for seed in 0..20 {
            let s = Sample {
                image: image.clone(),
                target: Target::Boxes {
                    boxes: vec![BoundingBox {
                        x1: 8.0,
                        y1: 10.0,
                        x2: 24.0,
                        y2: 20.0,
                    }],
                    labels: vec![0],
                },
            };
            let out = rrc.apply(s, &mut rng(seed));
            let Target::Boxes { boxes, .. } = &out.target else {
                panic!()
            };
            let Some(b) = boxes.first() else { continue };
            let (cx, cy) = (
                ((b.x1 + b.x2) / 2.0) as usize,
                ((b.y1 + b.y2) / 2.0) as usize,
            );
            assert!(
                out.image.pixel(cx, cy)[0] > 200,
                "box centre is not on the object"
            );
            if b.x1 >= 2.0 {
                let outside = out.image.pixel(b.x1 as usize - 2, cy);
                assert!(outside[0] < 60, "pixel left of the box is bright");
            }
        }
    }

    #[test]
    fn resized_crop_keeps_masks_aligned() {
        let mut image = Image::filled(16, 16, 3, 0);
        let mut mask = Mask {
            width: 16,
            height: 16,
            data: vec![0; 256],
        };
        for y in 4..12 {
            for x in 4..12 {
                image.data[(y * 16 + x) * 3] = 255;
                mask.data[y * 16 + x] = 1;
            }
        }
        let rrc = RandomResizedCrop {
            size: 24,
            scale: [0.3, 1.0],
            ratio: [0.75, 1.33],
            min_visible: 0.0,
        };
        for seed in 0..20 {
            let s = Sample {
                image: image.clone(),
                target: Target::Mask(mask.clone()),
            };
            let out = rrc.apply(s, &mut rng(seed));
            let Target::Mask(m) = &out.target else {
                panic!()
            };
            let mut agree = 0;
            for (i, &v) in m.data.iter().enumerate() {
                let red = out.image.data[i * 3];
                agree += usize::from((v == 1) == (red >= 128));
            }
            // Nearest and bilinear sampling may disagree only on the object's border.
            assert!(
                agree as f32 >= 0.9 * m.data.len() as f32,
                "{agree}/{}",
                m.data.len()
            );
        }
    }

    #[test]
    fn resize_of_same_size_is_identity() {
        let s = Sample {
            image: gradient_image(9, 7),
            target: Target::Label(1),
        };
        let out = Resize { size: 9 }.apply(
            Sample {
                image: gradient_image(9, 9),
                target: Target::Label(1),
            },
            &mut rng(0),
        );
        assert_eq!(out.image, gradient_image(9, 9));
        let out = Resize { size: 4 }.apply(s, &mut rng(0));
        assert_eq!((out.image.width, out.image.height), (4, 4));
    }
}

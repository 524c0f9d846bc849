//! Seeded data augmentation that moves an image's target with it.
//!
//! A [`Sample`] is an image plus its [`Target`]: a class label, bounding boxes, or a
//! segmentation mask. Geometric transforms move boxes and masks exactly as they move pixels,
//! so detection and segmentation can use the same pipeline as classification.
//!
//! Randomness is reproducible and independent of scheduling: [`Pipeline::apply`] derives each
//! sample's generator from `(seed, epoch, index)`, so a data-loader worker computes the same
//! augmentation for an item whichever thread or order it runs in.

mod color;
mod erase;
mod geometry;
mod mosaic;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::{DataError, Image, Result};

pub use color::ColorJitter;
pub use erase::Cutout;
pub use geometry::{
    AlternatingFlip, HorizontalFlip, PaddingMode, RandomCrop, RandomResizedCrop, Resize,
    resize_sample,
};
pub use mosaic::{Mosaic, NoPartners, Partners};

/// An axis-aligned box in pixel coordinates; `(x1, y1)` is the top-left corner and `(x2, y2)`
/// the bottom-right one, so a box covering the whole W×H image is `(0, 0, W, H)`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct BoundingBox {
    /// Left edge.
    pub x1: f32,
    /// Top edge.
    pub y1: f32,
    /// Right edge.
    pub x2: f32,
    /// Bottom edge.
    pub y2: f32,
}

impl BoundingBox {
    /// Width (zero when degenerate).
    pub fn width(&self) -> f32 {
        (self.x2 - self.x1).max(0.0)
    }

    /// Height (zero when degenerate).
    pub fn height(&self) -> f32 {
        (self.y2 - self.y1).max(0.0)
    }
}

/// A segmentation mask: one class index per pixel, [`Mask::IGNORE`] where unknown.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mask {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `height * width` class indices, row-major.
    pub data: Vec<u8>,
}

impl Mask {
    /// The value of pixels that carry no label (areas added by padding).
    pub const IGNORE: u8 = 255;

    /// A `width`×`height` mask of zeros (an instance mask covering nothing).
    pub fn zeros(width: usize, height: usize) -> Self {
        Self {
            width,
            height,
            data: vec![0; width * height],
        }
    }
}

/// What an image is labelled with.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    /// A class index.
    Label(usize),
    /// Object boxes with their class indices.
    Boxes {
        /// The boxes.
        boxes: Vec<BoundingBox>,
        /// One class index per box.
        labels: Vec<usize>,
    },
    /// A per-pixel class mask of the image's size.
    Mask(Mask),
    /// Object instances: boxes with their class indices and one binary mask each (1 on the
    /// object, 0 elsewhere, the image's size). Masks move with boxes and pixels; an object
    /// whose box is dropped loses its mask too.
    Instances {
        /// The boxes.
        boxes: Vec<BoundingBox>,
        /// One class index per box.
        labels: Vec<usize>,
        /// One mask per box.
        masks: Vec<Mask>,
    },
}

impl Target {
    /// Objects as a target: [`Target::Instances`] with their masks (one per box), or
    /// [`Target::Boxes`] without.
    pub fn objects(boxes: Vec<BoundingBox>, labels: Vec<usize>, masks: Option<Vec<Mask>>) -> Self {
        match masks {
            Some(masks) => Self::Instances {
                boxes,
                labels,
                masks,
            },
            None => Self::Boxes { boxes, labels },
        }
    }
}

/// An image and its target, the unit every transform works on.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The image.
    pub image: Image,
    /// Its label, boxes or mask.
    pub target: Target,
}

/// Where a sample is in training: what a transform needs beyond its random generator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    /// The pipeline's seed.
    pub seed: u64,
    /// 0-based epoch.
    pub epoch: u64,
    /// Index of the item in its dataset.
    pub index: u64,
}

/// One augmentation step.
pub trait Transform: Send + Sync + std::fmt::Debug {
    /// Transforms `sample`, drawing any randomness from `rng`.
    fn apply(&self, sample: Sample, rng: &mut ChaCha8Rng) -> Sample;

    /// Transforms the sample at `position`; transforms whose choice depends on the epoch or the
    /// item (not only on fresh randomness) override this.
    fn apply_at(&self, sample: Sample, rng: &mut ChaCha8Rng, position: Position) -> Sample {
        let _ = position;
        self.apply(sample, rng)
    }
}

/// One step of an augmentation config, as written in TOML (`[[augment]]` tables).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum TransformConfig {
    /// airbench's alternating flip: each image gets a fixed random side in even epochs and the
    /// other side in odd ones, so every image is seen both ways in any two consecutive epochs.
    AlternatingFlip,
    /// Mirror left–right with probability `p`.
    HorizontalFlip {
        /// Probability of flipping.
        #[serde(default = "half")]
        p: f32,
    },
    /// Pad by `padding` on every side, then crop `size` at a random place (a random translation).
    RandomCrop {
        /// Output side (square).
        size: usize,
        /// Pixels added on each side before cropping.
        #[serde(default)]
        padding: usize,
        /// How the padding is filled.
        #[serde(default)]
        padding_mode: PaddingMode,
    },
    /// Crop a random area fraction in `scale` with aspect ratio in `ratio`, resized to `size`.
    RandomResizedCrop {
        /// Output side (square).
        size: usize,
        /// Range of the crop's area as a fraction of the image's.
        #[serde(default = "default_scale")]
        scale: [f32; 2],
        /// Range of the crop's width / height.
        #[serde(default = "default_ratio")]
        ratio: [f32; 2],
        /// Boxes keeping less than this fraction of their area inside the crop are dropped
        /// (the rest are clipped to it); 0 keeps every box with a pixel left.
        #[serde(default)]
        min_visible: f32,
    },
    /// Resize to `size`×`size` (bilinear for images, nearest for masks).
    Resize {
        /// Output side (square).
        size: usize,
    },
    /// Random brightness, contrast, saturation and hue, applied in random order.
    ColorJitter {
        /// Brightness factor drawn from [1 − b, 1 + b].
        #[serde(default)]
        brightness: f32,
        /// Contrast factor drawn from [1 − c, 1 + c].
        #[serde(default)]
        contrast: f32,
        /// Saturation factor drawn from [1 − s, 1 + s].
        #[serde(default)]
        saturation: f32,
        /// Hue shift drawn from [−h, h] turns of the colour wheel (h ≤ 0.5).
        #[serde(default)]
        hue: f32,
    },
    /// YOLOv4/v5's mosaic ([`Mosaic`]): with probability `p`, the item and three others
    /// drawn at random, each scaled to a `size` long side, meet at a random point of a
    /// `size`×`size` image. It combines items, so it must be the first step, and it needs
    /// boxes or masks (a class label names one image).
    Mosaic {
        /// Output side (square).
        size: usize,
        /// Probability of making a mosaic (otherwise the item passes unchanged).
        #[serde(default = "one")]
        p: f32,
        /// Boxes showing less than this fraction of their area are dropped.
        #[serde(default = "mosaic_min_visible")]
        min_visible: f32,
        /// Grey level where no image is.
        #[serde(default = "mosaic_fill")]
        fill: u8,
    },
    /// Zero a `size`×`size` square at a random centre (it may hang over the border).
    Cutout {
        /// Side of the square.
        size: usize,
        /// Probability of applying it.
        #[serde(default = "one")]
        p: f32,
    },
}

fn half() -> f32 {
    0.5
}
fn one() -> f32 {
    1.0
}
/// YOLOv5's `box_candidates` area threshold.
fn mosaic_min_visible() -> f32 {
    0.1
}
/// YOLOv5's grey.
fn mosaic_fill() -> u8 {
    114
}
fn default_scale() -> [f32; 2] {
    [0.08, 1.0]
}
fn default_ratio() -> [f32; 2] {
    [3.0 / 4.0, 4.0 / 3.0]
}

fn check_probability(what: &str, p: f32) -> Result<()> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(DataError::invalid(
            what,
            format!("probability {p} is outside [0, 1]"),
        ))
    }
}

fn check_range(what: &str, range: [f32; 2], min: f32) -> Result<()> {
    if range[0] > min && range[0] <= range[1] && range[1].is_finite() {
        Ok(())
    } else {
        Err(DataError::invalid(
            what,
            format!("range {range:?} must be increasing and above {min}"),
        ))
    }
}

impl TransformConfig {
    /// The `[width, height]` of an image of `size` after this step.
    pub fn output_size(&self, size: [usize; 2]) -> [usize; 2] {
        match *self {
            Self::RandomCrop { size: side, .. }
            | Self::RandomResizedCrop { size: side, .. }
            | Self::Resize { size: side } => [side, side],
            // An item that stays whole keeps its size, so the size varies.
            Self::Mosaic { size: side, p, .. } if p >= 1.0 => [side, side],
            _ => size,
        }
    }

    /// Checks that `steps` give images of the `[width, height]` they get, as training must
    /// when validation and test images go through no augmentation: a network is sized for
    /// one input. `what` names where the steps come from (e.g. the config file).
    pub fn check_size_kept(steps: &[Self], size: [usize; 2], what: &str) -> Result<()> {
        let out = steps.iter().fold(size, |s, step| step.output_size(s));
        if out == size {
            return Ok(());
        }
        Err(DataError::invalid(
            "augmentation",
            format!(
                "{what}: the [[augment]] steps turn the {}×{} training images into {}×{} images, \
                 but validation and test images stay {}×{} and the network is built for one \
                 size; set the crop or resize size to {} (or remove the step)",
                size[0], size[1], out[0], out[1], size[0], size[1], size[0]
            ),
        ))
    }

    /// Validates the settings and builds the transform.
    pub fn build(&self) -> Result<Box<dyn Transform>> {
        Ok(match *self {
            Self::AlternatingFlip => Box::new(AlternatingFlip),
            Self::HorizontalFlip { p } => {
                check_probability("horizontal-flip", p)?;
                Box::new(HorizontalFlip { p })
            }
            Self::RandomCrop {
                size,
                padding,
                padding_mode,
            } => {
                if size == 0 {
                    return Err(DataError::invalid("random-crop", "size must be positive"));
                }
                Box::new(RandomCrop {
                    size,
                    padding,
                    padding_mode,
                })
            }
            Self::RandomResizedCrop {
                size,
                scale,
                ratio,
                min_visible,
            } => {
                if size == 0 || scale[1] > 1.0 || !(0.0..=1.0).contains(&min_visible) {
                    return Err(DataError::invalid(
                        "random-resized-crop",
                        "size must be positive, scale at most 1 and min_visible in [0, 1]",
                    ));
                }
                check_range("random-resized-crop scale", scale, 0.0)?;
                check_range("random-resized-crop ratio", ratio, 0.0)?;
                Box::new(RandomResizedCrop {
                    size,
                    scale,
                    ratio,
                    min_visible,
                })
            }
            Self::Resize { size } => {
                if size == 0 {
                    return Err(DataError::invalid("resize", "size must be positive"));
                }
                Box::new(Resize { size })
            }
            Self::ColorJitter {
                brightness,
                contrast,
                saturation,
                hue,
            } => {
                let factors = [brightness, contrast, saturation];
                if factors.iter().any(|f| !(0.0..=1.0).contains(f)) || !(0.0..=0.5).contains(&hue) {
                    return Err(DataError::invalid(
                        "color-jitter",
                        "brightness, contrast and saturation must be in [0, 1] and hue in [0, 0.5]",
                    ));
                }
                Box::new(ColorJitter {
                    brightness,
                    contrast,
                    saturation,
                    hue,
                })
            }
            Self::Cutout { size, p } => {
                check_probability("cutout", p)?;
                Box::new(Cutout { size, p })
            }
            Self::Mosaic { .. } => {
                return Err(DataError::invalid(
                    "mosaic",
                    "it combines whole items, so it must be the first [[augment]] step",
                ));
            }
        })
    }

    /// Checks a list of steps as a pipeline builds them (each step's settings, a mosaic only
    /// first).
    pub fn validate_steps(steps: &[Self]) -> Result<()> {
        Pipeline::from_config(steps, 0).map(|_| ())
    }

    /// Whether this step combines several items (it then needs boxes or masks to combine).
    pub fn mixes_items(&self) -> bool {
        matches!(self, Self::Mosaic { .. })
    }

    /// Validates a mosaic step's settings; `None` for other steps.
    fn build_mosaic(&self) -> Result<Option<Mosaic>> {
        let Self::Mosaic {
            size,
            p,
            min_visible,
            fill,
        } = *self
        else {
            return Ok(None);
        };
        check_probability("mosaic", p)?;
        if size < 2 || !(0.0..=1.0).contains(&min_visible) {
            return Err(DataError::invalid(
                "mosaic",
                "size must be at least 2 and min_visible in [0, 1]",
            ));
        }
        Ok(Some(Mosaic {
            size,
            p,
            min_visible,
            fill,
        }))
    }
}

/// A sequence of transforms with a seed, optionally after a [`Mosaic`] of items.
#[derive(Debug, Default)]
pub struct Pipeline {
    mosaic: Option<Mosaic>,
    transforms: Vec<Box<dyn Transform>>,
    seed: u64,
}

impl Pipeline {
    /// Builds a pipeline from config steps, validating each.
    pub fn from_config(steps: &[TransformConfig], seed: u64) -> Result<Self> {
        let mosaic = match steps.first() {
            Some(first) => first.build_mosaic()?,
            None => None,
        };
        let rest = &steps[usize::from(mosaic.is_some())..];
        Ok(Self {
            mosaic,
            transforms: rest
                .iter()
                .map(TransformConfig::build)
                .collect::<Result<_>>()?,
            seed,
        })
    }

    /// [`Pipeline::from_config`] for images with class labels, which cannot be combined: a
    /// mosaic step is an error.
    pub fn for_class_labels(steps: &[TransformConfig], seed: u64) -> Result<Self> {
        if steps.iter().any(TransformConfig::mixes_items) {
            return Err(DataError::invalid(
                "mosaic",
                "it combines four images, but a class label names one image; remove the \
                 mosaic step (it is for detection and segmentation)",
            ));
        }
        Self::from_config(steps, seed)
    }

    /// Whether the pipeline changes nothing.
    pub fn is_identity(&self) -> bool {
        self.transforms.is_empty() && self.mosaic.is_none()
    }

    /// Whether the pipeline combines items ([`Pipeline::apply_mixing`] gives it the others).
    pub fn mixes_items(&self) -> bool {
        self.mosaic.is_some()
    }

    /// The generator for item `index` in `epoch`: a pure function of `(seed, epoch, index)`.
    pub fn rng_for(&self, epoch: u64, index: u64) -> ChaCha8Rng {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        rng.set_stream(epoch);
        rng.set_word_pos((index as u128) << 20);
        rng
    }

    /// Applies every transform to `sample` with the randomness of `(epoch, index)`; a mosaic
    /// step has no other items to combine it with and leaves it whole.
    pub fn apply(&self, sample: Sample, epoch: u64, index: u64) -> Sample {
        self.apply_mixing(sample, epoch, index, &NoPartners)
    }

    /// [`Pipeline::apply`] with the items a mosaic step draws its partners from.
    pub fn apply_mixing(
        &self,
        mut sample: Sample,
        epoch: u64,
        index: u64,
        partners: &dyn Partners,
    ) -> Sample {
        if self.is_identity() {
            return sample;
        }
        let mut rng = self.rng_for(epoch, index);
        if let Some(mosaic) = &self.mosaic {
            sample = mosaic.apply(sample, &mut rng, partners);
        }
        let position = Position {
            seed: self.seed,
            epoch,
            index,
        };
        for t in &self.transforms {
            sample = t.apply_at(sample, &mut rng, position);
        }
        sample
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn gradient_image(w: usize, h: usize) -> Image {
        let mut data = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            for x in 0..w {
                data.extend([(x * 7) as u8, (y * 11) as u8, ((x + y) * 3) as u8]);
            }
        }
        Image::new(w, h, 3, data).unwrap()
    }

    fn full_config() -> Vec<TransformConfig> {
        toml::from_str::<Steps>(
            r#"
            [[augment]]
            type = "random-crop"
            size = 32
            padding = 4
            padding_mode = "reflect"
            [[augment]]
            type = "horizontal-flip"
            [[augment]]
            type = "color-jitter"
            brightness = 0.4
            contrast = 0.4
            saturation = 0.4
            hue = 0.1
            [[augment]]
            type = "cutout"
            size = 8
            "#,
        )
        .unwrap()
        .augment
    }

    #[derive(Deserialize)]
    struct Steps {
        augment: Vec<TransformConfig>,
    }

    #[test]
    fn seeded_runs_repeat_and_items_differ() {
        let pipeline = Pipeline::from_config(&full_config(), 42).unwrap();
        let sample = Sample {
            image: gradient_image(32, 32),
            target: Target::Label(3),
        };
        let a = pipeline.apply(sample.clone(), 0, 5);
        let b = pipeline.apply(sample.clone(), 0, 5);
        assert_eq!(a, b);
        assert_ne!(a.image, pipeline.apply(sample.clone(), 0, 6).image);
        assert_ne!(a.image, pipeline.apply(sample.clone(), 1, 5).image);
        let other_seed = Pipeline::from_config(&full_config(), 43).unwrap();
        assert_ne!(a.image, other_seed.apply(sample, 0, 5).image);
        assert_eq!(a.target, Target::Label(3));
    }

    #[test]
    fn bad_configs_are_rejected() {
        let bad = [
            TransformConfig::HorizontalFlip { p: 1.5 },
            TransformConfig::ColorJitter {
                brightness: 0.0,
                contrast: 0.0,
                saturation: 0.0,
                hue: 0.7,
            },
            TransformConfig::RandomResizedCrop {
                size: 8,
                scale: [0.5, 0.1],
                ratio: [1.0, 1.0],
                min_visible: 0.0,
            },
            TransformConfig::RandomCrop {
                size: 0,
                padding: 0,
                padding_mode: PaddingMode::Zero,
            },
        ];
        for step in bad {
            assert!(step.build().is_err(), "{step:?} accepted");
        }
        let unknown = toml::from_str::<Steps>("[[augment]]\ntype = \"rotate\"\n");
        assert!(unknown.is_err());
    }

    #[test]
    fn steps_that_change_the_size_are_named() {
        let crop = |size| TransformConfig::RandomCrop {
            size,
            padding: 4,
            padding_mode: PaddingMode::Reflect,
        };
        let flip = TransformConfig::HorizontalFlip { p: 0.5 };
        assert!(TransformConfig::check_size_kept(&[crop(32), flip.clone()], [32, 32], "c").is_ok());
        let err = TransformConfig::check_size_kept(&[flip, crop(32)], [28, 28], "my.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("my.toml") && err.contains("28×28") && err.contains("32×32"),
            "{err}"
        );
        // A crop back to the original size after a resize keeps it.
        let resized = [TransformConfig::Resize { size: 40 }, crop(28)];
        assert!(TransformConfig::check_size_kept(&resized, [28, 28], "c").is_ok());
    }
}

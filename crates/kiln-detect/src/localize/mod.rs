//! The course's first two detectors on one network: **localization as regression** (a
//! pretrained backbone with a class head and a 4-number box head, one box per image) and
//! **OverFeat's sliding windows** (the same heads run convolutionally over the image at several
//! scales, one pass per scale, every window's box regressed, merged by NMS).
//!
//! The heads read the backbone's globally averaged last feature map. For an input of
//! `window`×`window` pixels that map is `window/32` cells a side, so averaging every
//! `window/32`-cell square of a larger image's map (stride 1) and applying the linear heads
//! at each position (a 1×1 convolution) is exactly the network evaluated on every
//! `window`-pixel window at a 32-pixel step — OverFeat's "FC layers as convolutions".
//!
//! Training samples are either whole images warped to the input size (localization) or random
//! crops (windows; OverFeat): a window whose largest visible object covers at least
//! `min_object_fraction` of it is labelled with that object and its clipped box; others are
//! background (class 0).

mod model;
mod task;
mod windows;

pub use model::{Localizer, LocalizerConfig};
pub use task::{LocalizeTask, LocalizeTarget, BoxLoss};
pub use windows::{WindowSearch, localize_image, sliding_windows};

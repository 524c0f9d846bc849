//! The course's first two detectors on one network: **localization as regression** (a
//! pretrained backbone with a class head and a 4-number box head, one box per image) and
//! **OverFeat's sliding windows** (the same heads run convolutionally over the image at several
//! scales, one pass per scale, every window's box regressed, merged by NMS).
//!
//! The head reads the backbone's last feature map (stride 32) through OverFeat's fully
//! connected layers written as convolutions: a 1×1 convolution narrows the map, a
//! `window/32`-cell convolution is the fully connected layer over one window (it sees where in
//! the window things are, which global pooling would lose), and 1×1 convolutions give the class
//! scores and the box. On a `window`-pixel input the map is one window; on a larger image the
//! same layers slide over the map, giving every `window`-pixel window at a 32-pixel step in one
//! pass — OverFeat's "FC layers as convolutions".
//!
//! Training samples are either whole images warped to the input size (localization) or random
//! crops (windows; OverFeat): a window whose largest visible object covers at least
//! `min_object_fraction` of it is labelled with that object and its clipped box; others are
//! background (class 0).

mod model;
mod task;
mod windows;

pub use model::{Localizer, LocalizerConfig};
pub use task::{BoxLoss, LocalizeTarget, LocalizeTask};
pub use windows::{WindowSearch, localize_image, sliding_windows};

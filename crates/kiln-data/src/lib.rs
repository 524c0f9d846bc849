//! Data for kiln: dataset readers (CIFAR-10 binary, IDX, ImageFolder), downloads into a
//! checksummed cache, seeded stratified splits, normalisation fitted on training data only,
//! target-aware augmentation, batch orders that group images of like shape, Burn batchers, and
//! sample grids for looking at the data.
//!
//! Nothing here picks a Burn backend: batchers build tensors on whatever device they are given.

#![warn(missing_docs)]

pub mod augment;
mod batch;
pub mod cifar;
pub mod download;
mod error;
mod grid;
pub mod idx;
mod image;
pub mod image_folder;
mod normalize;
pub mod order;
pub mod presets;
mod source;
pub mod split;
pub mod throughput;

pub use batch::{
    Augmentable, AugmentedImages, AugmentedItems, ClassificationBatch, ClassificationBatcher,
    EpochCounter,
};
pub use error::{DataError, Result};
pub use grid::{GridOptions, save_grid};
pub use image::{Image, ImageSet};
pub use image_folder::ImageFolderOptions;
pub use normalize::{Normalization, NormalizationKind, channel_mean_std};
pub use source::{NO_DATA_HELP, TrainTest, default_dataset_dir, extract_into, open_dataset};
pub use split::Splits;

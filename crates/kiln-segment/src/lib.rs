//! Semantic segmentation on Burn, as CS231n teaches it: label every pixel with a network of
//! only convolutions (FCN, Long et al. 2015) on a pretrained kiln-nets backbone.
//!
//! - [`data`]: photos with label PNGs in CamVid's layout (`<split>/` + `<split>annot/`), class
//!   lists with colours and an ignored id, checked labels;
//! - [`batch`], [`dataset`]: items with masks, mask-aware augmentation, padded batches;
//! - [`balance`]: median-frequency class weights for the cross-entropy ([`loss`]);
//! - [`fcn`]: FCN-32s/16s/8s heads with bilinear-initialised transposed convolutions;
//! - [`metrics`]: pixel accuracy, mean class accuracy, per-class, mean and frequency-weighted
//!   IoU from one confusion matrix; [`draw`]: colour overlays and `confusion.png`;
//! - [`task`]: FCN training in kiln-train's loop; [`run`]: a whole run; [`predict`]: photos.
//!
//! The crate never picks a Burn backend.

#![warn(missing_docs)]

pub mod balance;
pub mod batch;
pub mod config;
pub mod data;
pub mod dataset;
pub mod draw;
mod error;
pub mod fcn;
pub mod loss;
pub mod metrics;
pub mod predict;
pub mod run;
pub mod task;

pub use error::{Result, SegmentError};

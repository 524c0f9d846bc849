//! Semantic segmentation on Burn, as CS231n teaches it: label every pixel.
//!
//! - [`data`]: photos with label PNGs in CamVid's layout (`<split>/` + `<split>annot/`), class
//!   lists with colours and an ignored id, checked labels;
//! - [`balance`]: median-frequency class weights for the cross-entropy;
//! - [`metrics`]: pixel accuracy, mean class accuracy, per-class, mean and frequency-weighted
//!   IoU from one confusion matrix.
//!
//! The crate never picks a Burn backend.

#![warn(missing_docs)]

pub mod balance;
pub mod data;
mod error;
pub mod metrics;

pub use error::{Result, SegmentError};

//! The first lessons of CS231n as Burn code: a k-nearest-neighbour classifier that keeps its
//! training set on the device, linear classifiers (multiclass SVM and softmax) whose gradients
//! are written out by hand as tensor operations, and numerical gradient checking for any
//! scalar function of tensors or any Burn module's parameters.
//!
//! Nothing here picks a backend: every function works on the device its tensors live on.

#![warn(missing_docs)]

pub mod cross_validation;
mod dot_u8;
mod error;
pub mod gradcheck;
pub mod knn;
pub mod linear;

pub use error::{ClassicError, Result};

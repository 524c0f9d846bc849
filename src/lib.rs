//! kiln's command-line layer: backend selection from cargo features and `--device`, config
//! files with flag overrides, and run-directory setup shared by every `kiln-*` binary.
//!
//! The library crates (`kiln-data`, `kiln-train`, …) never choose a backend; the binaries do,
//! through [`backend::device`].

#![warn(missing_docs)]

pub mod alloc;
pub mod backend;
pub mod cli;
pub mod cnn;
pub mod detect;
pub mod knn;
pub mod linear;
pub mod segment;

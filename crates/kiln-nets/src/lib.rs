//! kiln's neural networks as Burn modules with `Config` + `init`, usable from any Burn project.
//! Library code never picks a backend: modules live on the device they are initialised on.

#![warn(missing_docs)]

pub mod mlp;

pub use mlp::{Mlp, MlpConfig};

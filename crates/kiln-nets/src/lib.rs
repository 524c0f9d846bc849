//! kiln's neural networks as Burn modules with `Config` + `init`, usable from any Burn project.
//! Library code never picks a backend: modules live on the device they are initialised on.
//!
//! - [`Mlp`]: fully connected networks.
//! - [`ConvNet`]: plain conv-pool stacks (the course's nets, VGG-style, the speed benchmark).
//! - [`ResNet`]: residual networks for small images.
//! - [`ImageNetResNet`]: torchvision-compatible ResNet-18/34/50 with their published ImageNet
//!   weights ([`ResNetWeights`]).
//! - [`AirbenchNet`]: the airbench94 CIFAR-10 network, with [`whitening`] of its first layer.
//! - [`design`]: the course's design rules as blocks, and [`cost`] to count what they cost.
//! - [`EfficientNetLite`]: EfficientNet-Lite0 with its ImageNet weights ([`pretrained`] loads
//!   PyTorch state dicts).
//! - [`conv_algorithms`]: im2col, FFT and Winograd convolutions on CPU buffers.

//!
//! Using a network from another Burn project (the device picks the backend):
//!
//! ```ignore
//! use burn::tensor::Device;
//! use kiln_nets::{AirbenchConfig, ConvNetConfig, ResNetConfig};
//!
//! let device = Device::flex().autodiff();
//! let vgg = ConvNetConfig::vgg(3, 10, [32, 32], vec![vec![64, 64], vec![128, 128]]).init(&device);
//! let resnet = ResNetConfig::resnet20(3, 10).init(&device);
//! let airbench = AirbenchConfig::new()
//!     .init(&device)
//!     .with_whitening(&normalised_images, [5000, 3, 32, 32], 5e-4);
//! let scores = vgg.forward(images); // [batch, 10]
//! ```

#![warn(missing_docs)]

pub mod airbench;
pub mod conv_algorithms;
pub mod conv_net;
pub mod cost;
pub mod design;
pub mod efficientnet;
pub mod imagenet_resnet;
mod init;
pub mod mlp;
pub mod pretrained;
pub mod residual;
#[cfg(test)]
mod test_util;
pub mod whitening;

pub use airbench::{AirbenchConfig, AirbenchNet};
pub use conv_net::{ConvNet, ConvNetConfig};
pub use cost::{ForwardCost, trainable_params};
pub use efficientnet::{EfficientNetLite, EfficientNetLiteConfig};
pub use imagenet_resnet::{ImageNetResNet, ImageNetResNetConfig, ResNetWeights};
pub use mlp::{Mlp, MlpConfig};
pub use residual::{ResNet, ResNetConfig};

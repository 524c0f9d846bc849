//! kiln's neural networks as Burn modules with `Config` + `init`, usable from any Burn project:
//! this crate depends on burn and nothing else of kiln. Library code never picks a backend:
//! modules live on the device they are initialised on.
//!
//! Every network implements [`ImageClassifier`] (class scores) and, except the MLP,
//! [`Backbone`] (feature maps by stride, what detection and segmentation heads build on):
//!
//! - [`Mlp`]: fully connected networks.
//! - [`ConvNet`]: plain conv-pool stacks (the course's nets, VGG-style, the speed benchmark).
//! - [`CifarResNet`]: residual networks for small images (ResNet-20 …).
//! - [`AirbenchNet`]: the airbench94 CIFAR-10 network, with [`whitening`] of its first layer.
//! - [`ImageNetResNet`]: torchvision-compatible ResNet-18/34/50 with their published ImageNet
//!   weights ([`ResNetWeights`]).
//! - [`EfficientNetLite`]: EfficientNet-Lite0 with its ImageNet weights.
//! - [`zoo`]: one way to pick any of them from a config ([`ModelSpec`], [`Architecture`]) as
//!   one module type ([`Network`]).
//! - [`pretrained`] loads PyTorch state dicts with key rules (a file that does not match is
//!   refused with the list of what differs); [`parity`] checks a port against saved outputs.
//! - [`design`]: the course's design rules as blocks, and [`cost`] to count what they cost.
//! - [`conv`]: the convolution every network above runs, with kiln's own kernels forward and
//!   backward on Burn's Flex CPU backend (the `flex` feature), Burn's elsewhere; [`norm`],
//!   [`activation`] and [`pool`] do the same for batch normalisation, ReLU6 and max pooling.
//! - [`conv_algorithms`]: im2col, FFT and Winograd convolutions on CPU buffers.
//!
//! The `download` feature adds fetching published weights into a checksummed cache
//! (`download::load_pretrained`); without it the crate needs no HTTP, progress-bar or plotting
//! crate.
//!
//! EfficientNet-Lite0's ImageNet weights on a photo (the whole of
//! `examples/downstream` in kiln's repository, which depends only on burn, kiln-nets and an
//! image decoder):
//!
//! ```ignore
//! use burn::module::Module;
//! use burn::tensor::Device;
//! use kiln_nets::{Backbone, EfficientNetLiteConfig, ImageClassifier};
//!
//! let device = Device::flex();
//! let net = EfficientNetLiteConfig::lite0(1000)
//!     .init(&device)
//!     .load_pytorch("efficientnet-lite0-57934424.pth".as_ref())?
//!     .valid();
//! let scores = net.scores(images);              // [batch, 1000], images normalised with
//!                                               // IMAGENET_MEAN / IMAGENET_STD
//! let maps = net.feature_maps(images);          // strides 2, 4, 8, 16, 32
//! let c5 = maps.at_stride(32).unwrap();         // [batch, 1280, h/32, w/32]
//! ```
//!
//! Small-image networks from their configs:
//!
//! ```ignore
//! use kiln_nets::{AirbenchConfig, CifarResNetConfig, ConvNetConfig};
//!
//! let device = Device::flex().autodiff();
//! let vgg = ConvNetConfig::vgg(3, 10, [32, 32], vec![vec![64, 64], vec![128, 128]]).init(&device);
//! let resnet = CifarResNetConfig::resnet20(3, 10).init(&device);
//! let airbench = AirbenchConfig::new()
//!     .init(&device)
//!     .with_whitening(&normalised_images, [5000, 3, 32, 32], 5e-4);
//! ```

#![warn(missing_docs)]

pub mod activation;
pub mod airbench;
pub mod autocast;
pub mod backbone;
pub mod cifar_resnet;
pub mod conv;
pub mod conv_algorithms;
pub mod conv_net;
pub mod cost;
pub mod design;
#[cfg(feature = "download")]
pub mod download;
pub mod efficientnet;
#[cfg(feature = "flex")]
mod flex_slices;
pub mod imagenet_resnet;
mod init;
pub mod linear;
pub mod mlp;
pub mod norm;
pub mod parity;
pub mod pool;
pub mod pretrained;
mod simd;
#[cfg(test)]
mod test_util;
pub mod whitening;
pub mod zoo;

pub use airbench::{AirbenchConfig, AirbenchNet};
pub use backbone::{Backbone, FeatureLevel, FeatureMaps, ImageClassifier};
pub use cifar_resnet::{CifarResNet, CifarResNetConfig};
pub use conv_net::{ConvNet, ConvNetConfig};
pub use cost::{ForwardCost, trainable_params};
pub use efficientnet::{EfficientNetLite, EfficientNetLiteConfig};
pub use imagenet_resnet::{
    IMAGENET_MEAN, IMAGENET_STD, ImageNetResNet, ImageNetResNetConfig, ResNetWeights,
};
pub use mlp::{Mlp, MlpConfig};
pub use zoo::{Architecture, Geometry, ModelSpec, Network};

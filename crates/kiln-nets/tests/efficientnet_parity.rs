//! EfficientNet-Lite0 with the published ImageNet weights reproduces PyTorch's outputs.
//!
//! Needs the shared files: runs when `KILN_SHARED` points at them (`.ci/run` sets it), and says
//! it was skipped otherwise.

mod common;

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use kiln_nets::parity::compare_with_reference;
use kiln_nets::pretrained::{PretrainedError, max_relative_error, read_safetensors};
use kiln_nets::{Backbone, EfficientNetLiteConfig};

fn values(data: burn::tensor::TensorData) -> Vec<f32> {
    data.convert::<f32>().try_to_vec().unwrap()
}

#[test]
fn lite0_reproduces_pytorch_features_and_logits() {
    let Some(shared) = common::shared_dir() else {
        return;
    };
    let weights = shared.join("pretrained/efficientnet-lite0-57934424.pth");
    let reference = shared.join("pretrained/efficientnet-lite0-reference.safetensors");
    let device = Device::flex();
    let net = EfficientNetLiteConfig::lite0(1000)
        .init(&device)
        .load_pytorch(&weights)
        .unwrap()
        .valid();

    let input = read_safetensors(&reference, "input").unwrap();
    assert_eq!(input.shape().as_slice(), &[4, 3, 224, 224]);
    let input = Tensor::<4>::from_data(input, &device);
    let features = net
        .feature_maps(input.clone())
        .at_stride(32)
        .expect("a stride-32 map")
        .clone();
    let pooled: Tensor<2> = features.clone().mean_dim(3).mean_dim(2).flatten(1, 3);
    let logits = net.fc.forward(pooled);

    let expected_features = values(read_safetensors(&reference, "features").unwrap());
    let expected_logits = values(read_safetensors(&reference, "logits").unwrap());
    let feature_error = max_relative_error(&values(features.into_data()), &expected_features);
    let logit_error = max_relative_error(&values(logits.clone().into_data()), &expected_logits);
    eprintln!("max relative error: features {feature_error:.2e}, logits {logit_error:.2e}");
    assert!(feature_error < 1e-4, "features differ: {feature_error:.2e}");
    assert!(logit_error < 1e-4, "logits differ: {logit_error:.2e}");
    // The same through `forward` (dropout is off in eval).
    let through_forward = values(net.forward(input).into_data());
    assert!(max_relative_error(&through_forward, &expected_logits) < 1e-4);
    // And what `kiln-classify --reference` reports.
    let errors = compare_with_reference(&net, &reference, &device).unwrap();
    assert!(errors.logits < 1e-4, "{errors:?}");
    assert!(errors.features.is_some_and(|f| f < 1e-4), "{errors:?}");
}

#[test]
fn weights_of_another_shape_are_refused_with_a_list() {
    let Some(shared) = common::shared_dir() else {
        return;
    };
    let weights = shared.join("pretrained/efficientnet-lite0-57934424.pth");
    let device = Device::flex();
    // A 10-class head and a narrower stem cannot take the ImageNet tensors.
    let error = EfficientNetLiteConfig::lite0(10)
        .with_stem_channels(24)
        .init(&device)
        .load_pytorch(&weights)
        .unwrap_err();
    assert!(matches!(error, PretrainedError::Mismatch { .. }), "{error}");
    let message = error.to_string();
    assert!(
        message.contains("efficientnet-lite0-57934424.pth"),
        "{message}"
    );
    assert!(message.contains("conv_stem.weight"), "{message}");
    assert!(message.contains("fc.weight"), "{message}");
}

#[test]
fn a_truncated_file_is_a_read_error() {
    let Some(shared) = common::shared_dir() else {
        return;
    };
    let weights = shared.join("pretrained/efficientnet-lite0-57934424.pth");
    let bytes = std::fs::read(&weights).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("cut.pth");
    std::fs::write(&cut, &bytes[..bytes.len() / 3]).unwrap();
    let error = EfficientNetLiteConfig::lite0(1000)
        .init(&Device::flex())
        .load_pytorch(&cut)
        .unwrap_err();
    assert!(matches!(error, PretrainedError::Read { .. }), "{error}");
    assert!(error.to_string().contains("cut.pth"));
}

//! kiln's torchvision ResNets hold exactly the tensors of torchvision's state dicts, with the
//! same shapes, and the key rules map every torchvision name onto kiln's paths. The tests that
//! compare with the shared state-dict listing run when `KILN_SHARED` points at it (`.ci/run`
//! sets it) and say they were skipped otherwise.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use burn::store::{BurnToPyTorchAdapter, ModuleSnapshot};
use burn::tensor::Device;
use kiln_nets::pretrained::PretrainedError;
use kiln_nets::{ImageNetResNet, ImageNetResNetConfig};

/// Tensor name → shape.
type Shapes = BTreeMap<String, Vec<usize>>;

/// The network's tensors under PyTorch's conventions (BN `weight`/`bias`, `[out, in]` linear
/// weights), with kiln's paths.
fn kiln_shapes(net: &ImageNetResNet) -> Shapes {
    net.collect(None, Some(Box::new(BurnToPyTorchAdapter)), true)
        .into_iter()
        .map(|tensor| (tensor.name.clone(), tensor.shape.as_slice().to_vec()))
        .collect()
}

/// The inverse of [`ImageNetResNet::pytorch_keys`]: a kiln path to torchvision's name.
fn torch_name(kiln_path: &str) -> String {
    kiln_path
        .replace(".downsample.conv.", ".downsample.0.")
        .replace(".downsample.bn.", ".downsample.1.")
}

/// torchvision's state dicts (name → shape) from the shared JSON, by architecture.
fn torchvision_state_dicts(shared: &Path) -> BTreeMap<String, Shapes> {
    let path = shared.join("pretrained/torchvision-resnet-state-dicts.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn named_configs() -> [(&'static str, ImageNetResNetConfig); 3] {
    [
        ("resnet18", ImageNetResNetConfig::resnet18(1000)),
        ("resnet34", ImageNetResNetConfig::resnet34(1000)),
        ("resnet50", ImageNetResNetConfig::resnet50(1000)),
    ]
}

#[test]
fn torchvision_resnet_shapes_match_the_state_dicts() {
    let Some(shared) = common::shared_dir() else {
        return;
    };
    let dicts = torchvision_state_dicts(&shared);
    let keys = ImageNetResNet::pytorch_keys();
    let device = Device::flex();
    for (name, config) in named_configs() {
        let torch: Shapes = dicts[name]
            .iter()
            .filter(|(key, _)| !key.ends_with("num_batches_tracked"))
            .map(|(key, shape)| (key.clone(), shape.clone()))
            .collect();
        let net = config.init(&device);
        let kiln = kiln_shapes(&net);

        // kiln → torch: every kiln tensor, renamed, is in the state dict with its shape.
        let as_torch: Shapes = kiln
            .iter()
            .map(|(path, shape)| (torch_name(path), shape.clone()))
            .collect();
        let extra: Vec<_> = as_torch
            .keys()
            .filter(|k| !torch.contains_key(*k))
            .collect();
        let missing: Vec<_> = torch
            .keys()
            .filter(|k| !as_torch.contains_key(*k))
            .collect();
        assert!(
            extra.is_empty() && missing.is_empty(),
            "{name}: not in torchvision {extra:?}; missing from kiln {missing:?}"
        );
        assert_eq!(as_torch, torch, "{name}: shapes differ");

        // torch → kiln: every state-dict name maps through the KeyMap to a kiln path.
        let mapped: Shapes = torch
            .iter()
            .map(|(key, shape)| (keys.map_name(key).unwrap(), shape.clone()))
            .collect();
        assert_eq!(
            mapped, kiln,
            "{name}: KeyMap does not reproduce kiln's paths"
        );
        eprintln!("{name}: {} tensors match torchvision", kiln.len());
    }
}

#[test]
fn torchvision_resnet_refuses_weights_of_another_network() {
    let Some(shared) = common::shared_dir() else {
        return;
    };
    let other = shared.join("pretrained/efficientnet-lite0-57934424.pth");
    let net = ImageNetResNetConfig::resnet18(1000).init(&Device::flex());
    let error = net.load_pytorch(&other).unwrap_err();
    assert!(matches!(error, PretrainedError::Mismatch { .. }), "{error}");
    let message = error.to_string();
    assert!(message.contains("ResNet-18 (1000 classes)"), "{message}");
    assert!(message.contains("missing from the file"), "{message}");
    assert!(message.contains("102 tensor(s) missing"), "{message}");
    assert!(message.contains("conv1.weight"), "{message}");
}

#[test]
fn torchvision_resnet_key_map_renames_real_names() {
    let keys = ImageNetResNet::pytorch_keys();
    for (torch, kiln) in [
        ("conv1.weight", "conv1.weight"),
        ("bn1.running_var", "bn1.running_var"),
        ("layer1.0.conv1.weight", "layer1.0.conv1.weight"),
        (
            "layer2.0.downsample.0.weight",
            "layer2.0.downsample.conv.weight",
        ),
        (
            "layer2.0.downsample.1.weight",
            "layer2.0.downsample.bn.weight",
        ),
        (
            "layer3.0.downsample.1.running_mean",
            "layer3.0.downsample.bn.running_mean",
        ),
        ("layer4.2.bn3.bias", "layer4.2.bn3.bias"),
        ("fc.weight", "fc.weight"),
    ] {
        assert_eq!(keys.map_name(torch).unwrap(), kiln);
        assert_eq!(torch_name(kiln), torch);
    }
}

#[test]
fn torchvision_resnet_kiln_paths_are_torchvision_names() {
    // Without the shared JSON: the paths follow torchvision's layout (blocks, downsample
    // only in the first block of a stage that changes the shape).
    let device = Device::flex();
    let net = ImageNetResNetConfig::resnet18(1000).init(&device);
    let kiln = kiln_shapes(&net);
    assert_eq!(kiln.len(), 102, "{:?}", kiln.keys().collect::<Vec<_>>());
    assert_eq!(kiln["conv1.weight"], [64, 3, 7, 7]);
    assert_eq!(kiln["bn1.weight"], [64]);
    assert_eq!(kiln["layer2.0.downsample.conv.weight"], [128, 64, 1, 1]);
    assert_eq!(kiln["layer2.0.downsample.bn.running_var"], [128]);
    assert_eq!(kiln["fc.weight"], [1000, 512]);
    assert_eq!(kiln["fc.bias"], [1000]);
    assert!(!kiln.contains_key("layer1.0.downsample.conv.weight"));
    assert!(
        !kiln
            .keys()
            .any(|k| k.contains("gamma") || k.contains("training"))
    );

    let net = ImageNetResNetConfig::resnet50(1000).init(&device);
    let kiln = kiln_shapes(&net);
    // ResNet-50's first stage changes the channel count (64 → 256) at stride 1.
    assert_eq!(kiln["layer1.0.downsample.conv.weight"], [256, 64, 1, 1]);
    assert_eq!(kiln["layer4.2.conv3.weight"], [2048, 512, 1, 1]);
    assert_eq!(kiln["fc.weight"], [1000, 2048]);
}

//! The downstream example against PyTorch's outputs and on a real photo. Needs the shared
//! files: runs when `KILN_SHARED` points at them (`.ci/run` sets it), and says it was skipped
//! otherwise.

use std::path::{Path, PathBuf};
use std::process::Command;

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use kiln_downstream_example::top_classes;
use kiln_nets::EfficientNetLiteConfig;
use kiln_nets::pretrained::read_safetensors;

fn shared() -> Option<PathBuf> {
    match std::env::var_os("KILN_SHARED") {
        Some(dir) if !dir.is_empty() => Some(PathBuf::from(dir)),
        _ => {
            eprintln!("SKIPPED: KILN_SHARED is not set, so the downstream example was not run");
            None
        }
    }
}

fn weights(shared: &Path) -> PathBuf {
    shared.join("pretrained/efficientnet-lite0-57934424.pth")
}

#[test]
fn top_classes_agree_with_pytorch() {
    let Some(shared) = shared() else { return };
    let reference = shared.join("pretrained/efficientnet-lite0-reference.safetensors");
    let device = Device::flex();
    let net = EfficientNetLiteConfig::lite0(1000)
        .init(&device)
        .load_pytorch(&weights(&shared))
        .unwrap()
        .valid();
    let input = Tensor::<4>::from_data(read_safetensors(&reference, "input").unwrap(), &device);
    let logits: Vec<f32> = read_safetensors(&reference, "logits")
        .unwrap()
        .convert::<f32>()
        .try_to_vec()
        .unwrap();
    let ours = top_classes(&net, input, 5);
    assert_eq!(ours.len(), 4);
    for (image, top) in ours.iter().enumerate() {
        let row = &logits[image * 1000..(image + 1) * 1000];
        let pytorch = (0..1000)
            .max_by(|&a, &b| row[a].total_cmp(&row[b]))
            .unwrap();
        assert_eq!(top[0].0, pytorch, "image {image}: {top:?}");
        assert!(top.windows(2).all(|w| w[0].1 >= w[1].1), "{top:?}");
    }
}

/// The first JPEG of the raccoon archive, written into `dir`.
fn a_photo(shared: &Path, dir: &Path) -> PathBuf {
    let archive = std::fs::File::open(shared.join("datasets/raccoon-voc.tar.gz")).unwrap();
    let mut entries = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    for entry in entries.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_path_buf();
        if name.extension().is_some_and(|e| e == "jpg") {
            let out = dir.join(name.file_name().unwrap());
            entry.unpack(&out).unwrap();
            return out;
        }
    }
    panic!("the raccoon archive holds no JPEG");
}

#[test]
fn the_binary_names_five_classes_for_a_photo() {
    let Some(shared) = shared() else { return };
    let dir = tempfile::tempdir().unwrap();
    let photo = a_photo(&shared, dir.path());
    let classes = shared.join("pretrained/imagenet-classes.txt");
    let out = Command::new(env!("CARGO_BIN_EXE_classify-photo"))
        .arg(weights(&shared))
        .arg(&classes)
        .arg(&photo)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let names = std::fs::read_to_string(&classes).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 6, "{stdout}");
    assert!(lines[0].ends_with(".jpg"));
    let mut previous = f64::INFINITY;
    for line in &lines[1..] {
        let (percent, name) = line.trim().split_once("%  ").expect("`p%  name`");
        let percent: f64 = percent.trim().parse().unwrap();
        assert!((0.0..=previous).contains(&percent), "{stdout}");
        previous = percent;
        assert!(names.lines().any(|n| n == name), "{name}");
    }

    // A missing photo is an error naming it, not a panic.
    let missing = Command::new(env!("CARGO_BIN_EXE_classify-photo"))
        .arg(weights(&shared))
        .arg(&classes)
        .arg(dir.path().join("nope.jpg"))
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("nope.jpg"));
}

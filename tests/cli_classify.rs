//! `kiln-classify` end to end with the shared EfficientNet-Lite0 weights (runs when
//! `KILN_SHARED` is set, as `.ci/run` does, and says plainly when it was skipped).

mod common;

use std::process::Command;

use common::text;

const BIN: &str = env!("CARGO_BIN_EXE_kiln-classify");

fn classify(shared: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env("KILN_SHARED", shared)
        .output()
        .expect("kiln-classify runs")
}

#[test]
fn reference_check_passes_on_the_published_weights() {
    let Some(shared) = common::shared_dir("the pretrained weights were not run") else {
        return;
    };
    let weights = shared.join("pretrained/efficientnet-lite0-57934424.pth");
    let reference = shared.join("pretrained/efficientnet-lite0-reference.safetensors");
    let out = classify(
        &shared,
        &[
            "--weights",
            weights.to_str().unwrap(),
            "--reference",
            reference.to_str().unwrap(),
        ],
    );
    let log = text(&out);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("logits   max relative error"), "{log}");
    assert!(log.contains("features max relative error"), "{log}");

    // An impossible tolerance fails the check with a non-zero exit.
    let strict = classify(
        &shared,
        &[
            "--weights",
            "efficientnet-lite0",
            "--reference",
            reference.to_str().unwrap(),
            "--tolerance",
            "0",
        ],
    );
    assert!(!strict.status.success(), "{}", text(&strict));
    assert!(text(&strict).contains("above the tolerance"));
}

#[test]
fn prints_top_five_named_classes_for_each_image() {
    let Some(shared) = common::shared_dir("the pretrained weights were not run") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // A wide orange-and-black striped picture and a small grey one (upscaled by the preset).
    let stripes = dir.path().join("stripes.png");
    image::RgbImage::from_fn(320, 240, |x, _| {
        if (x / 12) % 2 == 0 {
            image::Rgb([230, 120, 20])
        } else {
            image::Rgb([10, 10, 10])
        }
    })
    .save(&stripes)
    .unwrap();
    let grey = dir.path().join("grey.png");
    image::GrayImage::from_pixel(100, 150, image::Luma([128]))
        .save(&grey)
        .unwrap();
    let out = classify(
        &shared,
        &[
            "--weights",
            "efficientnet-lite0",
            stripes.to_str().unwrap(),
            grey.to_str().unwrap(),
        ],
    );
    let log = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{}", text(&out));
    let lines: Vec<&str> = log.lines().collect();
    assert_eq!(lines.len(), 12, "{log}");
    assert!(lines[0].ends_with("stripes.png") && lines[6].ends_with("grey.png"));
    let names = std::fs::read_to_string(shared.join("pretrained/imagenet-classes.txt")).unwrap();
    let mut previous = f64::INFINITY;
    for line in &lines[1..6] {
        let (percent, name) = line.trim().split_once("%  ").expect("`P%  name`");
        let percent: f64 = percent.trim().parse().unwrap();
        assert!(percent <= previous, "sorted by probability: {log}");
        previous = percent;
        assert!(
            names.lines().any(|n| n == name),
            "`{name}` is an ImageNet class"
        );
    }
}

#[test]
fn bad_inputs_are_clear_errors() {
    let Some(shared) = common::shared_dir("the pretrained weights were not run") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.jpg");
    let out = classify(
        &shared,
        &["--weights", "efficientnet-lite0", missing.to_str().unwrap()],
    );
    assert!(!out.status.success());
    assert!(text(&out).contains("missing.jpg"), "{}", text(&out));

    let corrupt = dir.path().join("corrupt.jpg");
    std::fs::write(&corrupt, b"\xff\xd8\xff\xe0 not really a jpeg").unwrap();
    let out = classify(
        &shared,
        &["--weights", "efficientnet-lite0", corrupt.to_str().unwrap()],
    );
    assert!(!out.status.success());
    assert!(text(&out).contains("corrupt.jpg"), "{}", text(&out));

    // A file that is not a state dict of a known network.
    let reference = shared.join("pretrained/efficientnet-lite0-reference.safetensors");
    let out = classify(
        &shared,
        &[
            "--weights",
            reference.to_str().unwrap(),
            corrupt.to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("efficientnet-lite0-reference.safetensors"),
        "{}",
        text(&out)
    );
    assert!(!text(&out).contains("panicked"), "{}", text(&out));

    // A NaN tolerance, a class-name file of the wrong length, a cut photo: errors, not "ok".
    let fails_naming = |args: &[&str], expected: &str| {
        let out = classify(&shared, args);
        assert!(!out.status.success(), "{}", text(&out));
        assert!(text(&out).contains(expected), "{expected}: {}", text(&out));
    };
    let reference = reference.to_str().unwrap();
    fails_naming(
        &[
            "--weights",
            "efficientnet-lite0",
            "--reference",
            reference,
            "--tolerance",
            "NaN",
        ],
        "--tolerance NaN",
    );
    let photo = dir.path().join("photo.jpg");
    image::RgbImage::from_fn(64, 64, |x, y| image::Rgb([x as u8, y as u8, 7]))
        .save(&photo)
        .unwrap();
    let photo = photo.to_str().unwrap();
    let three = dir.path().join("three.txt");
    std::fs::write(&three, "a\nb\nc\n").unwrap();
    let three = three.to_str().unwrap();
    fails_naming(
        &["--weights", "efficientnet-lite0", "--classes", three, photo],
        "three.txt has 3 class names but the network has 1000",
    );
    let bytes = std::fs::read(photo).unwrap();
    std::fs::write(photo, &bytes[..bytes.len() / 3]).unwrap();
    fails_naming(
        &["--weights", "efficientnet-lite0", photo],
        "photo.jpg: cannot decode image (the JPEG data end before the image does (the file was \
         cut short))",
    );
}

//! Random and mutated bytes as weight files and checkpoints: errors naming the file, never
//! panics. The mutations of the published EfficientNet-Lite0 file run when `KILN_SHARED` points
//! at the shared data (`.ci/run` sets it) and are skipped otherwise.

mod common;

use burn::tensor::Device;
use kiln_nets::EfficientNetLiteConfig;
use kiln_nets::pretrained::pytorch_tensor_names;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_are_not_weights(
        bytes in proptest::collection::vec(any::<u8>(), 0..2_000),
        zip in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("random.pth");
        // Half the cases look like the start of a zip archive (PyTorch's modern format).
        let mut bytes = bytes;
        if zip {
            bytes.splice(0..0, *b"PK\x03\x04");
        }
        std::fs::write(&path, &bytes).unwrap();
        let err = pytorch_tensor_names(&path).err();
        prop_assert!(err.is_some_and(|e| e.to_string().contains("random.pth")));
    }
}

#[test]
fn mutated_published_weights_are_errors_or_load() {
    let Some(shared) = common::shared_dir() else {
        return;
    };
    let original =
        std::fs::read(shared.join("pretrained/efficientnet-lite0-57934424.pth")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let device = Device::flex();
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: 12,
        ..ProptestConfig::default()
    });
    let strategy = (
        proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        0.0..=1.0f64,
    );
    runner
        .run(&strategy, |(edits, keep)| {
            let mut bytes = original.clone();
            for (at, value) in edits {
                let n = bytes.len();
                bytes[at % n] = value;
            }
            bytes.truncate((bytes.len() as f64 * keep).ceil() as usize);
            let path = dir.path().join("mutated.pth");
            std::fs::write(&path, &bytes).unwrap();
            let _ = pytorch_tensor_names(&path);
            if let Err(e) = EfficientNetLiteConfig::lite0(1000)
                .init(&device)
                .load_pytorch(&path)
            {
                prop_assert!(e.to_string().contains("mutated.pth"), "{e}");
            }
            Ok(())
        })
        .unwrap();
}

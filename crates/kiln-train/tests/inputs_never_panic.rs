//! Random and mutated checkpoints and `[train]` tables: errors, never panics.

use burn::nn::{Linear, LinearConfig};
use burn::tensor::Device;
use kiln_train::trainer::TrainSettings;
use kiln_train::{load_module, save_module};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn mutated_checkpoints_are_errors_or_load(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
        keep in 0.0..=1.0f64,
    ) {
        let device = Device::flex();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("last.bpk");
        let model: Linear = LinearConfig::new(4, 3).init(&device);
        save_module(&model, &path).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let n = bytes.len();
        for (at, value) in edits {
            bytes[at % n] = value;
        }
        bytes.truncate((n as f64 * keep).ceil() as usize);
        std::fs::write(&path, &bytes).unwrap();
        if let Err(e) = load_module(LinearConfig::new(4, 3).init(&device), &path) {
            prop_assert!(e.to_string().contains("last.bpk"), "{e}");
        }
    }

    #[test]
    fn train_tables_parse_or_say_why(text in "[a-z_ =.0-9\\[\\]\"\\n-]{0,120}") {
        if let Ok(settings) = toml::from_str::<TrainSettings>(&text) {
            let _ = settings.validate();
        }
    }
}

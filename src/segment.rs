//! What `kiln-segment` needs beside the library: the train config's flag overrides.

use kiln_segment::config::SegmentConfig;

use crate::cli::TrainConfig;

impl TrainConfig for SegmentConfig {
    fn seed_mut(&mut self) -> &mut u64 {
        &mut self.seed
    }

    fn train_mut(&mut self) -> &mut kiln_train::trainer::TrainSettings {
        &mut self.train
    }
}

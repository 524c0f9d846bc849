//! The shared CamVid copy (`$KILN_SHARED/datasets/camvid.tar.gz`): both splits read and checked,
//! and the median-frequency weights of the 367 training labels equal the ones SegNet's
//! recipe gives (quoted in the segmentation issue). Skipped, saying so, without `KILN_SHARED`.

use kiln_segment::balance::ClassPixels;
use kiln_segment::data::{ClassList, find_root, read_label, read_split};

#[test]
fn camvid_splits_and_median_frequency_weights() {
    let Some(shared) = std::env::var_os("KILN_SHARED").filter(|v| !v.is_empty()) else {
        eprintln!("skipped: KILN_SHARED is not set, so the shared CamVid copy is not read");
        return;
    };
    let archive = std::path::Path::new(&shared).join("datasets/camvid.tar.gz");
    let cache = kiln_data::download::cache_dir();
    let root = find_root(&archive, "train", &cache).unwrap();
    let classes = ClassList::camvid();
    let train = read_split(&root, "train").unwrap();
    let val = read_split(&root, "val").unwrap();
    assert_eq!((train.samples.len(), val.samples.len()), (367, 101));
    let mut counts = ClassPixels::new(classes.len());
    for sample in &train.samples {
        let mask = read_label(&sample.label, classes.len(), classes.ignore).unwrap();
        assert_eq!((mask.width, mask.height), (480, 360));
        counts.add(&mask);
    }
    let expected = [
        0.279, 0.202, 4.787, 0.149, 1.000, 0.422, 3.847, 1.974, 0.789, 6.375, 8.859,
    ];
    let weights = counts.median_frequency_weights();
    for (c, (got, want)) in weights.iter().zip(expected).enumerate() {
        assert!(
            (got - want).abs() < 5e-4,
            "{}: {got:.4} vs {want}",
            classes.classes[c].name
        );
    }
}

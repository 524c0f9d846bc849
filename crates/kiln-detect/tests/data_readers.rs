//! The detection readers on the shared raccoon data set (`$KILN_SHARED/datasets/raccoon-voc.tar.gz`:
//! 200 photos, 217 boxes, split files of 160 and 40 images). Skipped, with a note, when
//! `KILN_SHARED` is not set.

use std::collections::BTreeSet;
use std::path::PathBuf;

use kiln_detect::data::{
    DetectionSet, LoadOptions, SplitSource, load_detection_data, read_coco_instances,
    read_voc_annotation, write_coco_instances,
};

/// The raccoon archive, or `None` (after printing why) when `KILN_SHARED` is not set.
fn raccoon_archive() -> Option<PathBuf> {
    let Some(shared) = std::env::var_os("KILN_SHARED").filter(|v| !v.is_empty()) else {
        eprintln!("skipped: KILN_SHARED is not set, so the shared raccoon data set is not read");
        return None;
    };
    let archive = PathBuf::from(shared).join("datasets/raccoon-voc.tar.gz");
    assert!(
        archive.is_file(),
        "KILN_SHARED is set but {} does not exist",
        archive.display()
    );
    Some(archive)
}

fn boxes(set: &DetectionSet) -> usize {
    set.images.iter().map(|im| im.objects.len()).sum()
}

fn file_names(set: &DetectionSet) -> BTreeSet<String> {
    set.images
        .iter()
        .map(|im| im.path.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

fn listed(path: PathBuf) -> BTreeSet<String> {
    std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn raccoon_archive_loads_with_its_split_files() {
    let Some(archive) = raccoon_archive() else {
        return;
    };
    let data = load_detection_data(&archive, &LoadOptions::default()).unwrap();
    let report = &data.report;
    println!(
        "raccoon: {} train / {} test images, {} boxes, {} clipped, {} resized annotations, {} skipped",
        data.train.images.len(),
        data.test.images.len(),
        boxes(&data.train) + boxes(&data.test),
        report.clipped_boxes,
        report.resized_annotations,
        report.skipped_images.len()
    );
    assert_eq!(data.train.images.len(), 160);
    assert_eq!(data.test.images.len(), 40);
    assert_eq!(boxes(&data.train) + boxes(&data.test), 217);
    assert!(
        report.skipped_images.is_empty(),
        "{:?}",
        report.skipped_images
    );

    let SplitSource::Files(splits) = &report.split else {
        panic!("expected the archive's split files, got {:?}", report.split);
    };
    assert!(splits.ends_with("raccoon/splits"), "{}", splits.display());
    assert_eq!(file_names(&data.train), listed(splits.join("train.txt")));
    assert_eq!(file_names(&data.test), listed(splits.join("test.txt")));

    // One class; ids 1..=200 over both sides, each side in id order.
    assert_eq!(data.train.categories.len(), 1);
    assert_eq!(data.train.categories[0].name, "raccoon");
    assert_eq!(data.train.categories[0].id, 1);
    let mut ids: Vec<u64> = data
        .train
        .images
        .iter()
        .chain(&data.test.images)
        .map(|im| im.id)
        .collect();
    assert!(data.train.images.windows(2).all(|w| w[0].id < w[1].id));
    ids.sort_unstable();
    assert_eq!(ids, (1..=200).collect::<Vec<_>>());

    for image in data.train.images.iter().chain(&data.test.images) {
        assert!(image.width > 0 && image.height > 0);
        for object in &image.objects {
            let b = object.bbox;
            assert!(
                0.0 <= b.x1 && b.x1 < b.x2 && b.x2 <= image.width as f32,
                "{b:?}"
            );
            assert!(
                0.0 <= b.y1 && b.y1 < b.y2 && b.y2 <= image.height as f32,
                "{b:?}"
            );
            assert_eq!(object.area, b.width() * b.height());
            assert!(!object.crowd);
        }
    }

    // raccoon-1.xml: 650x417, one box (81, 88, 522, 408) in VOC's 1-based pixels.
    let first = data
        .train
        .images
        .iter()
        .find(|im| im.path.ends_with("raccoon-1.jpg"))
        .unwrap();
    assert_eq!((first.width, first.height), (650, 417));
    let b = first.objects[0].bbox;
    assert_eq!((b.x1, b.y1, b.x2, b.y2), (80.0, 87.0, 522.0, 408.0));
    let root = splits.parent().unwrap();
    let voc = read_voc_annotation(
        &root.join("annotations/raccoon-1.xml"),
        &root.join("images"),
    )
    .unwrap();
    assert_eq!(voc.size, Some((650, 417)));
    assert_eq!(voc.image, first.path);

    // The same split again: deterministic.
    let again = load_detection_data(&archive, &LoadOptions::default()).unwrap();
    assert_eq!(again, data);
}

#[test]
fn raccoon_round_trips_through_coco_instances() {
    let Some(archive) = raccoon_archive() else {
        return;
    };
    let data = load_detection_data(&archive, &LoadOptions::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("instances_test.json");
    write_coco_instances(&data.test, &json).unwrap();
    let image_dir = data.test.images[0].path.parent().unwrap();
    let back = read_coco_instances(&json, image_dir).unwrap();
    assert_eq!(back, data.test);
}

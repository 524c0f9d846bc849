//! Random and mutated VOC XML, COCO instances and COCO results fed to kiln-detect's readers:
//! each must answer with a result or an error naming the file, never a panic.

use std::path::Path;

use kiln_detect::data::{
    AnnotatedImage, BoundingBox, Category, Detection, DetectionSet, LoadOptions, Object,
    load_detection_data, read_coco_instances, read_coco_results, read_voc_annotation,
    write_coco_instances, write_coco_results,
};
use proptest::prelude::*;

const VOC: &str = r#"<annotation verified="yes">
	<folder>images</folder>
	<filename>a.jpg</filename>
	<size><width>16</width><height>12</height><depth>3</depth></size>
	<object>
		<name>raccoon</name><pose>Unspecified</pose><truncated>1</truncated><difficult>0</difficult>
		<bndbox><xmin>2</xmin><ymin>3</ymin><xmax>14</xmax><ymax>12</ymax></bndbox>
	</object>
</annotation>
"#;

/// A small set and its COCO instances and results files, as bytes.
fn coco_files(dir: &Path) -> (DetectionSet, Vec<u8>, Vec<u8>) {
    let bbox = BoundingBox {
        x1: 1.0,
        y1: 2.0,
        x2: 9.5,
        y2: 11.0,
    };
    let set = DetectionSet {
        categories: vec![
            Category {
                id: 1,
                name: "cat".into(),
            },
            Category {
                id: 5,
                name: "dog".into(),
            },
        ],
        images: (1..=2)
            .map(|id| AnnotatedImage {
                id,
                path: dir.join(format!("{id}.jpg")),
                width: 16,
                height: 12,
                objects: vec![Object {
                    bbox,
                    class: id as usize - 1,
                    area: 76.5,
                    difficult: id == 2,
                    crowd: false,
                    mask: None,
                }],
            })
            .collect(),
    };
    let detections: Vec<Detection> = (0..3)
        .map(|i| Detection {
            image_id: 1 + i % 2,
            class: i as usize % 2,
            bbox,
            score: 0.25 * i as f32,
        })
        .collect();
    let (instances, results) = (dir.join("i.json"), dir.join("r.json"));
    write_coco_instances(&set, &instances).unwrap();
    write_coco_results(&detections, &set, &results).unwrap();
    (
        set,
        std::fs::read(instances).unwrap(),
        std::fs::read(results).unwrap(),
    )
}

/// `bytes` with `edits` applied: (position, new byte) pairs, then cut to `keep` of its length.
fn mutate(mut bytes: Vec<u8>, edits: &[(usize, u8)], keep: f64) -> Vec<u8> {
    let n = bytes.len();
    for &(at, value) in edits {
        if n > 0 {
            bytes[at % n] = value;
        }
    }
    bytes.truncate((n as f64 * keep).ceil() as usize);
    bytes
}

/// Edits that favour the characters that matter to XML and JSON.
fn edits() -> impl Strategy<Value = Vec<(usize, u8)>> {
    let byte = prop_oneof![
        any::<u8>(),
        prop::sample::select(b"<>/\"{}[],:-.0123456789eE \n".to_vec()),
    ];
    proptest::collection::vec((any::<usize>(), byte), 0..8)
}

/// A field value: numbers (odd ones included) or junk.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i32>().prop_map(|v| v.to_string()),
        any::<f64>().prop_map(|v| v.to_string()),
        "[-+0-9.eEinfa <&]{0,6}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn voc_files(
        edits in edits(),
        keep in 0.0..=1.0f64,
        random in proptest::collection::vec(any::<u8>(), 0..512),
        fields in proptest::collection::vec(value(), 7),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let structured = VOC
            .replace(">16<", &format!(">{}<", fields[0]))
            .replace(">12</height", &format!(">{}</height", fields[1]))
            .replace(">2<", &format!(">{}<", fields[2]))
            .replace(">3</ymin", &format!(">{}</ymin", fields[3]))
            .replace(">14<", &format!(">{}<", fields[4]))
            .replace(">12</ymax", &format!(">{}</ymax", fields[5]))
            .replace(">0</difficult", &format!(">{}</difficult", fields[6]));
        let cases = [
            ("m.xml", mutate(VOC.as_bytes().to_vec(), &edits, keep)),
            ("r.xml", random),
            ("s.xml", structured.into_bytes()),
        ];
        for (name, bytes) in cases {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            match read_voc_annotation(&path, dir.path()) {
                Ok(a) => {
                    for o in &a.objects {
                        prop_assert!(o.bbox.x1 < o.bbox.x2 && o.bbox.y1 < o.bbox.y2, "{o:?}");
                    }
                }
                Err(e) => prop_assert!(e.to_string().contains(name), "{e}"),
            }
        }
    }

    #[test]
    fn coco_json_files(
        edits in edits(),
        keep in 0.0..=1.0f64,
        random in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let (set, instances, results) = coco_files(dir.path());
        let cases = [
            ("mi.json", mutate(instances, &edits, keep)),
            ("mr.json", mutate(results, &edits, keep)),
            ("r.json", random),
        ];
        for (name, bytes) in cases {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            if let Err(e) = read_coco_instances(&path, dir.path()) {
                prop_assert!(e.to_string().contains(name), "{e}");
            }
            match read_coco_results(&path, &set) {
                Ok(detections) => {
                    for d in detections {
                        prop_assert!(d.class < set.categories.len());
                    }
                }
                Err(e) => prop_assert!(e.to_string().contains(name), "{e}"),
            }
        }
    }

    #[test]
    fn data_set_folders(edits in edits(), keep in 0.0..=1.0f64, skip in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("set");
        std::fs::create_dir_all(root.join("images")).unwrap();
        std::fs::create_dir_all(root.join("annotations")).unwrap();
        let image = image::RgbImage::from_fn(16, 12, |x, y| image::Rgb([x as u8 * 9, y as u8 * 7, 3]));
        for name in ["a", "b"] {
            image.save(root.join(format!("images/{name}.jpg"))).unwrap();
            std::fs::write(
                root.join(format!("annotations/{name}.xml")),
                VOC.replace("a.jpg", &format!("{name}.jpg")),
            )
            .unwrap();
        }
        std::fs::write(root.join("annotations/a.xml"), mutate(VOC.as_bytes().to_vec(), &edits, keep))
            .unwrap();
        let jpeg = std::fs::read(root.join("images/b.jpg")).unwrap();
        std::fs::write(root.join("images/b.jpg"), mutate(jpeg, &edits, keep)).unwrap();
        let options = LoadOptions { skip_bad_images: skip, ..LoadOptions::default() };
        match load_detection_data(&root, &options) {
            Ok(data) => {
                for image in data.train.images.iter().chain(&data.test.images) {
                    for o in &image.objects {
                        prop_assert!(o.bbox.x1 >= 0.0 && o.bbox.x2 <= image.width as f32);
                        prop_assert!(o.bbox.x1 < o.bbox.x2 && o.bbox.y1 < o.bbox.y2);
                    }
                }
            }
            Err(e) => {
                let message = e.to_string();
                prop_assert!(
                    message.contains("a.xml") || message.contains("b.jpg") || message.contains("b.xml"),
                    "{message}"
                );
                prop_assert!(!message.contains('\n'), "{message}");
            }
        }
    }
}

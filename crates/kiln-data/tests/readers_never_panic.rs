//! Random and mutated bytes fed to every reader of kiln-data: each must answer with an error
//! (or, for bytes that happen to be valid, a result), never a panic, and extraction must never
//! write outside its destination.

use std::io::Write;
use std::path::Path;

use kiln_data::cifar::parse_cifar10_batch;
use kiln_data::download::extract_archive;
use kiln_data::idx::parse_idx;
use kiln_data::image_folder::decode_image;
use proptest::prelude::*;

/// A valid IDX file of `n` 2×2 images.
fn idx_file(n: u8) -> Vec<u8> {
    let mut out = vec![0, 0, 8, 3, 0, 0, 0, n, 0, 0, 0, 2, 0, 0, 0, 2];
    out.extend((0..n as usize * 4).map(|i| i as u8));
    out
}

/// A small valid PNG and JPEG.
fn images() -> (Vec<u8>, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let image = image::RgbImage::from_fn(16, 12, |x, y| image::Rgb([x as u8 * 9, y as u8 * 7, 3]));
    let (png, jpg) = (dir.path().join("a.png"), dir.path().join("a.jpg"));
    image.save(&png).unwrap();
    image.save(&jpg).unwrap();
    (std::fs::read(png).unwrap(), std::fs::read(jpg).unwrap())
}

/// A small valid .tar.gz holding `x/one.txt`.
fn archive() -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(3);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "x/one.txt", &b"one"[..])
        .unwrap();
    let bytes = tar.into_inner().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&bytes).unwrap();
    gz.finish().unwrap()
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

fn edits() -> impl Strategy<Value = Vec<(usize, u8)>> {
    proptest::collection::vec((any::<usize>(), any::<u8>()), 0..8)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn cifar_batches(bytes in proptest::collection::vec(any::<u8>(), 0..8_000)) {
        let _ = parse_cifar10_batch(&bytes, Path::new("data_batch_1.bin"));
    }

    #[test]
    fn idx_files(
        bytes in proptest::collection::vec(any::<u8>(), 0..200),
        edits in edits(),
        keep in 0.0..=1.0f64,
    ) {
        let _ = parse_idx(&bytes, Path::new("random-idx3-ubyte"));
        let _ = parse_idx(&mutate(idx_file(3), &edits, keep), Path::new("mutated-idx3-ubyte"));
    }

    #[test]
    fn image_files(
        edits in edits(),
        keep in 0.0..=1.0f64,
        random in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let (png, jpg) = images();
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("m.png", mutate(png, &edits, keep)),
            ("m.jpg", mutate(jpg, &edits, keep)),
            ("r.jpg", random),
        ];
        for (name, bytes) in cases {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            if let Err(e) = decode_image(&path, None) {
                prop_assert!(e.to_string().contains(name), "{e}");
            }
        }
    }

    #[test]
    fn archives(edits in edits(), keep in 0.0..=1.0f64) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.tar.gz");
        std::fs::write(&path, mutate(archive(), &edits, keep)).unwrap();
        let dest = dir.path().join("out");
        let _ = extract_archive(&path, &dest);
        // Nothing lands beside the destination (no escapes, no staging left behind).
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        prop_assert!(names == ["a.tar.gz"] || names == ["a.tar.gz", "out"], "{names:?}");
    }
}

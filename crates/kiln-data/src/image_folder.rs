//! ImageFolder datasets, `root/<class>/<image>.{jpg,jpeg,png}`, decoded in parallel into memory.

use std::fs;
use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::{DataError, Image, ImageSet, Result, TrainTest};

/// How an ImageFolder is read.
#[derive(Clone, Debug)]
pub struct ImageFolderOptions {
    /// Resize every image to (width, height) with a triangle filter. Required when the images
    /// differ in size.
    pub resize: Option<(usize, usize)>,
    /// Refuse to load more than this many decoded bytes (default 8 GiB).
    pub max_bytes: usize,
}

impl Default for ImageFolderOptions {
    fn default() -> Self {
        Self {
            resize: None,
            max_bytes: 8 << 30,
        }
    }
}

fn is_image_file(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png"))
}

fn sorted_entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| DataError::io(dir, e))?
        .map(|e| e.map(|e| e.path()).map_err(|err| DataError::io(dir, err)))
        .collect::<Result<_>>()?;
    entries.sort();
    Ok(entries)
}

/// The files of an ImageFolder: `(path, label)` pairs and the class names.
pub type FolderListing = (Vec<(PathBuf, usize)>, Vec<String>);

/// Lists `(path, label)` pairs and the class names (sorted directory names) under `root`.
pub fn list_image_folder(root: &Path) -> Result<FolderListing> {
    let mut classes = Vec::new();
    let mut files = Vec::new();
    for class_dir in sorted_entries(root)?.into_iter().filter(|p| p.is_dir()) {
        let label = classes.len();
        classes.push(
            class_dir
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned(),
        );
        for file in sorted_entries(&class_dir)?
            .into_iter()
            .filter(|p| is_image_file(p))
        {
            files.push((file, label));
        }
    }
    if files.is_empty() {
        return Err(DataError::NotFound {
            path: root.to_path_buf(),
            reason: "no images found; an ImageFolder is root/<class>/<image>.jpg|png".into(),
        });
    }
    Ok((files, classes))
}

/// The longest side kiln decodes or resizes an image to: a file claiming more is refused
/// before its pixels are allocated (a few kilobytes of PNG can otherwise ask for gigabytes).
pub const MAX_IMAGE_SIDE: usize = 16_384;

/// The most bytes one decoded image may take.
pub const MAX_IMAGE_BYTES: u64 = 512 << 20;

/// Whether JPEG `bytes` end their last scan with the end-of-image marker. Entropy-coded data
/// never holds `FF D9` (an `FF` there is followed by `00` or a restart marker), so a file cut
/// short lacks it — decoders fill the missing rows with grey and say nothing.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let last_scan = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    let start = last_scan.unwrap_or(0);
    bytes[start..].windows(2).any(|w| w == [0xFF, 0xD9])
}

/// Decodes one image file to 8-bit RGB, optionally resized. Refuses images larger than
/// [`MAX_IMAGE_SIDE`] or [`MAX_IMAGE_BYTES`] before decoding them, and JPEG files cut short.
pub fn decode_image(path: &Path, resize: Option<(usize, usize)>) -> Result<Image> {
    let decode_error = |reason: String| DataError::Decode {
        path: path.to_path_buf(),
        reason,
    };
    if let Some((w, h)) = resize
        && (w == 0 || h == 0 || w > MAX_IMAGE_SIDE || h > MAX_IMAGE_SIDE)
    {
        return Err(DataError::invalid(
            "resize",
            format!("{w}x{h}: each side must be between 1 and {MAX_IMAGE_SIDE}"),
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    if bytes.starts_with(&[0xFF, 0xD8]) && !jpeg_is_complete(&bytes) {
        return Err(decode_error(
            "the JPEG data end before the image does (the file was cut short)".into(),
        ));
    }
    let mut reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| DataError::io(path, e))?;
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_SIDE as u32);
    limits.max_image_height = Some(MAX_IMAGE_SIDE as u32);
    limits.max_alloc = Some(MAX_IMAGE_BYTES);
    reader.limits(limits);
    let decoded = reader.decode().map_err(|e| decode_error(e.to_string()))?;
    let mut rgb = decoded.to_rgb8();
    if let Some((w, h)) = resize
        && (rgb.width() as usize, rgb.height() as usize) != (w, h)
    {
        rgb = image::imageops::resize(
            &rgb,
            w as u32,
            h as u32,
            image::imageops::FilterType::Triangle,
        );
    }
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    Image::new(w, h, 3, rgb.into_raw())
}

/// Loads every image below `root` into an [`ImageSet`], decoding in parallel.
pub fn load_image_folder(root: &Path, options: &ImageFolderOptions) -> Result<ImageSet> {
    let (files, classes) = list_image_folder(root)?;
    let images: Vec<Image> = files
        .par_iter()
        .map(|(path, _)| decode_image(path, options.resize))
        .collect::<Result<_>>()?;
    let (w, h) = (images[0].width, images[0].height);
    if let Some(i) = images.iter().position(|im| (im.width, im.height) != (w, h)) {
        return Err(DataError::format(
            &files[i].0,
            format!(
                "is {}x{} but {} is {w}x{h}; pass a resize (e.g. --resize {w}x{h}) to load images of different sizes",
                images[i].width,
                images[i].height,
                files[0].0.display()
            ),
        ));
    }
    let total = images.len() * w * h * 3;
    if total > options.max_bytes {
        return Err(DataError::invalid(
            "ImageFolder size",
            format!(
                "{} would take {total} bytes decoded, over the {} byte limit; resize the images smaller",
                root.display(),
                options.max_bytes
            ),
        ));
    }
    let mut pixels = Vec::with_capacity(total);
    for im in &images {
        pixels.extend_from_slice(&im.data);
    }
    ImageSet::new(
        w,
        h,
        3,
        pixels,
        files.iter().map(|(_, l)| *l).collect(),
        classes,
    )
}

/// Whether `dir` is an ImageFolder split root: `train/<class>/…` present.
pub fn has_train_test_folders(dir: &Path) -> bool {
    dir.join("train").is_dir()
}

/// Loads `root/train` and, when present, `root/test` (or `root/val`); a root holding the class
/// directories directly becomes a train-only dataset.
pub fn load_image_folder_splits(root: &Path, options: &ImageFolderOptions) -> Result<TrainTest> {
    let name = root
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "imagefolder".into());
    if !has_train_test_folders(root) {
        return Ok(TrainTest {
            name,
            train: load_image_folder(root, options)?,
            test: None,
        });
    }
    let train = load_image_folder(&root.join("train"), options)?;
    let test_dir = ["test", "val"]
        .iter()
        .map(|d| root.join(d))
        .find(|p| p.is_dir());
    let test = match test_dir {
        Some(dir) => {
            let test = load_image_folder(&dir, options)?;
            if test.classes != train.classes {
                return Err(DataError::format(
                    &dir,
                    "class directories differ from those of train/",
                ));
            }
            Some(test)
        }
        None => None,
    };
    Ok(TrainTest { name, train, test })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_png(path: &Path, w: u32, h: u32, value: u8) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        image::RgbImage::from_pixel(w, h, image::Rgb([value, value / 2, 255 - value]))
            .save(path)
            .unwrap();
    }

    #[test]
    fn classes_are_sorted_directories_and_pixels_survive() {
        let dir = tempfile::tempdir().unwrap();
        write_png(&dir.path().join("train/zebra/1.png"), 4, 3, 10);
        write_png(&dir.path().join("train/ant/b.png"), 4, 3, 20);
        write_png(&dir.path().join("train/ant/a.png"), 4, 3, 30);
        write_png(&dir.path().join("test/ant/x.png"), 4, 3, 40);
        write_png(&dir.path().join("test/zebra/y.png"), 4, 3, 50);
        fs::write(dir.path().join("train/ant/notes.txt"), "ignored").unwrap();
        let data = load_image_folder_splits(dir.path(), &Default::default()).unwrap();
        assert_eq!(data.train.classes, vec!["ant", "zebra"]);
        assert_eq!(data.train.labels, vec![0, 0, 1]);
        assert_eq!(data.train.image(0).pixel(3, 2), &[30, 15, 225]);
        assert_eq!(data.test.unwrap().labels, vec![0, 1]);
    }

    #[test]
    fn corrupt_jpeg_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        write_png(&dir.path().join("a/ok.png"), 2, 2, 1);
        let bad = dir.path().join("a/broken.jpg");
        fs::write(&bad, b"\xff\xd8\xff\xe0 this is not really a jpeg").unwrap();
        let err = load_image_folder(dir.path(), &Default::default()).unwrap_err();
        assert!(err.to_string().contains("broken.jpg"), "{err}");
    }

    #[test]
    fn mixed_sizes_need_a_resize() {
        let dir = tempfile::tempdir().unwrap();
        write_png(&dir.path().join("a/1.png"), 2, 2, 1);
        write_png(&dir.path().join("a/2.png"), 3, 2, 1);
        let err = load_image_folder(dir.path(), &Default::default()).unwrap_err();
        assert!(err.to_string().contains("resize"), "{err}");
        let options = ImageFolderOptions {
            resize: Some((5, 4)),
            ..Default::default()
        };
        let set = load_image_folder(dir.path(), &options).unwrap();
        assert_eq!((set.width, set.height, set.len()), (5, 4, 2));
    }

    #[test]
    fn empty_folder_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("cls")).unwrap();
        assert!(matches!(
            load_image_folder(dir.path(), &Default::default()),
            Err(DataError::NotFound { .. })
        ));
    }

    #[test]
    fn cut_jpegs_and_oversized_images_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let photo =
            image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8 * 4, y as u8 * 5, 90]));
        let whole = dir.path().join("whole.jpg");
        photo.save(&whole).unwrap();
        let decoded = decode_image(&whole, None).unwrap();
        assert_eq!((decoded.width, decoded.height), (64, 48));
        let bytes = std::fs::read(&whole).unwrap();
        let cut = dir.path().join("cut.jpg");
        std::fs::write(&cut, &bytes[..bytes.len() / 3]).unwrap();
        let err = decode_image(&cut, None).unwrap_err().to_string();
        assert!(
            err.contains("cut.jpg") && err.contains("cut short"),
            "{err}"
        );

        // A tiny file that claims a huge image is refused before its pixels are allocated.
        let tall = dir.path().join("tall.png");
        image::GrayImage::new(1, (MAX_IMAGE_SIDE + 1) as u32)
            .save(&tall)
            .unwrap();
        assert!(std::fs::metadata(&tall).unwrap().len() < 100_000);
        let err = decode_image(&tall, None).unwrap_err().to_string();
        assert!(err.contains("tall.png"), "{err}");

        for size in [(0, 0), (MAX_IMAGE_SIDE + 1, 8)] {
            let err = decode_image(&whole, Some(size)).unwrap_err().to_string();
            assert!(err.contains("must be between 1 and"), "{err}");
        }
    }
}

//! Running a trained run's FCN on photos: each photo's labels in the classes' colours, laid
//! over the photo, and as a one-byte-a-pixel class-id PNG (the format of the labels it learnt).

use std::path::{Path, PathBuf};

use burn::data::dataloader::batcher::Batcher;
use burn::module::Module;
use burn::tensor::Device;
use kiln_data::Image;
use kiln_data::augment::Mask;
use kiln_data::image_folder::decode_image;

use crate::batch::{SegmentationBatcher, SegmentationItem};
use crate::data::ClassList;
use crate::draw::{colour_labels, overlay};
use crate::run::load_run;
use crate::task::predict_batch;
use crate::{Result, SegmentError};

fn save_rgb(image: &Image, path: &Path) -> Result<()> {
    kiln_train::write_via_temp(path, ".png", |tmp| {
        image::RgbImage::from_raw(image.width as u32, image.height as u32, image.data.clone())
            .expect("an RGB image holds width × height × 3 bytes")
            .save(tmp)
            .map_err(|e| kiln_train::TrainError::Invalid(format!("{}: {e}", path.display())))
    })?;
    Ok(())
}

fn save_ids(ids: &[u8], width: usize, height: usize, path: &Path) -> Result<()> {
    kiln_train::write_via_temp(path, ".png", |tmp| {
        image::GrayImage::from_raw(width as u32, height as u32, ids.to_vec())
            .expect("one byte a pixel")
            .save(tmp)
            .map_err(|e| kiln_train::TrainError::Invalid(format!("{}: {e}", path.display())))
    })?;
    Ok(())
}

/// The predicted class of each pixel of `photo` (`mirror`: average with the mirror image's).
pub fn segment_photo(
    model: &crate::fcn::Fcn,
    photo: Image,
    mirror: bool,
    device: &Device,
) -> Result<Vec<u8>> {
    let (width, height) = (photo.width, photo.height);
    let item = SegmentationItem {
        image: photo,
        mask: Mask {
            width,
            height,
            data: vec![Mask::IGNORE; width * height],
        },
        name: String::new(),
    };
    let batch = SegmentationBatcher::default().batch(vec![item], device);
    let mut predicted = predict_batch(model, batch.images, &[[width, height]], mirror)?;
    Ok(predicted.remove(0))
}

/// Segments `images` with the FCN of the run at `run_dir`, writing for each photo
/// `<out>/<stem>-labels.png` (colours), `<stem>-overlay.png` and `<stem>-ids.png` (class ids);
/// returns the written paths.
pub fn predict_files(
    run_dir: &Path,
    images: &[PathBuf],
    out: &Path,
    device: &Device,
) -> Result<Vec<PathBuf>> {
    let (config, model) = load_run(run_dir, device)?;
    let model = model.valid();
    let classes: &ClassList = &config.data.classes;
    let mirror = config.mirror_tta();
    std::fs::create_dir_all(out).map_err(|e| SegmentError::io(out, e))?;
    let mut written = Vec::new();
    for path in images {
        let photo = decode_image(path, None)?.to_rgb();
        let (w, h) = (photo.width, photo.height);
        let ids = segment_photo(&model, photo.clone(), mirror, device)?;
        let stem = path
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let labels = out.join(format!("{stem}-labels.png"));
        save_rgb(&colour_labels(&ids, w, h, classes), &labels)?;
        let over = out.join(format!("{stem}-overlay.png"));
        save_rgb(&overlay(&photo, &ids, classes, 0.6), &over)?;
        let raw = out.join(format!("{stem}-ids.png"));
        save_ids(&ids, w, h, &raw)?;
        written.extend([labels, over, raw]);
    }
    Ok(written)
}

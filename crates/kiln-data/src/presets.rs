//! Evaluation preprocessing that pretrained weights expect, as torchvision's
//! `ImageClassification` preset does it: resize the short side (antialiased bilinear), crop the
//! centre, scale to [0, 1] and normalise per channel.

use std::path::Path;

use image::imageops::FilterType;

use crate::image_folder::decode_image;
use crate::{DataError, Image, ImageSet, Result};

/// ImageNet's per-channel mean (RGB, pixels scaled to [0, 1]).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet's per-channel standard deviation (RGB, pixels scaled to [0, 1]).
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Images as one `[n, 3, height, width]` buffer (row-major, channel planes) normalised with
/// ImageNet's statistics, each image at the top left and zero (after normalisation) beyond it:
/// the padded batch detectors and segmenters feed a pretrained backbone. Grey images repeat
/// their one channel; pixels beyond `height`×`width` are cut off.
pub fn imagenet_normalised_padded(images: &[&Image], [height, width]: [usize; 2]) -> Vec<f32> {
    let plane = height * width;
    let mut values = vec![0f32; images.len() * 3 * plane];
    for (n, image) in images.iter().enumerate() {
        for y in 0..image.height.min(height) {
            for x in 0..image.width.min(width) {
                let px = image.pixel(x, y);
                for c in 0..3 {
                    let v = px[c.min(px.len() - 1)] as f32 / 255.0;
                    values[(n * 3 + c) * plane + y * width + x] =
                        (v - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
                }
            }
        }
    }
    values
}

/// Reads class names, one a line, blank lines skipped (e.g. `imagenet-classes.txt`).
pub fn read_class_names(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect())
}

/// Resize-then-centre-crop preprocessing to a normalised CHW float image.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassificationPreset {
    /// The short side after resizing (256 for ImageNet weights).
    pub resize_size: usize,
    /// Side of the square centre crop (224 for ImageNet weights).
    pub crop_size: usize,
    /// Per-channel mean subtracted after scaling to [0, 1].
    pub mean: [f32; 3],
    /// Per-channel standard deviation divided by.
    pub std: [f32; 3],
}

impl ClassificationPreset {
    /// What ImageNet-trained weights expect: short side 256, centre crop 224, ImageNet mean/std.
    pub fn imagenet() -> Self {
        Self {
            resize_size: 256,
            crop_size: 224,
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
        }
    }

    /// ImageNet normalisation at another resolution: resize to `size / 0.875` then crop `size`
    /// (the same 87.5 % crop ratio as 224 from 256).
    pub fn imagenet_at(size: usize) -> Self {
        Self {
            resize_size: (size as f32 / 0.875).round() as usize,
            crop_size: size,
            ..Self::imagenet()
        }
    }

    /// Checks the sizes.
    pub fn validate(&self) -> Result<()> {
        if self.crop_size == 0 || self.resize_size < self.crop_size {
            return Err(DataError::invalid(
                "classification preset",
                format!(
                    "the crop ({}) must be positive and no larger than the resized short side ({})",
                    self.crop_size, self.resize_size
                ),
            ));
        }
        if self.std.iter().any(|s| *s <= 0.0 || !s.is_finite()) {
            return Err(DataError::invalid(
                "classification preset",
                format!("standard deviations {:?} must be positive", self.std),
            ));
        }
        Ok(())
    }

    /// Preprocesses a decoded image (grey is repeated to RGB) to `3 × crop × crop` floats, CHW.
    pub fn apply(&self, image: &Image) -> Vec<f32> {
        let rgb = if image.channels == 3 {
            image.clone()
        } else {
            image.to_rgb()
        };
        let resized = resize_short_side(&rgb, self.resize_size);
        let crop = center_crop(&resized, self.crop_size);
        let plane = self.crop_size * self.crop_size;
        let mut out = vec![0f32; 3 * plane];
        for (i, pixel) in crop.data.chunks_exact(3).enumerate() {
            for c in 0..3 {
                out[c * plane + i] = (pixel[c] as f32 / 255.0 - self.mean[c]) / self.std[c];
            }
        }
        out
    }

    /// Decodes the image file at `path` and preprocesses it. An image so elongated that
    /// resizing its short side would make its long side exceed
    /// [`MAX_IMAGE_SIDE`](crate::image_folder::MAX_IMAGE_SIDE) is refused.
    pub fn load(&self, path: &Path) -> Result<Vec<f32>> {
        let image = decode_image(path, None)?;
        let (short, long) = (image.width.min(image.height), image.width.max(image.height));
        let resized_long = (self.resize_size as f64 * long as f64 / short.max(1) as f64) as usize;
        if resized_long > crate::image_folder::MAX_IMAGE_SIDE {
            return Err(DataError::format(
                path,
                format!(
                    "is {}×{}: resizing its short side to {} would make it {resized_long} pixels \
                     long (at most {}); crop it to a less elongated shape first",
                    image.width,
                    image.height,
                    self.resize_size,
                    crate::image_folder::MAX_IMAGE_SIDE
                ),
            ));
        }
        Ok(self.apply(&image))
    }
}

/// Every image of `set` resized to `size`×`size` RGB (antialiased bilinear; grey repeated to three
/// channels), in parallel: small images such as CIFAR-10's brought to the resolution a pretrained
/// network works at.
pub fn resize_set(set: &ImageSet, size: usize) -> Result<ImageSet> {
    use rayon::prelude::*;
    if size == 0 {
        return Err(DataError::invalid("resize", "the size must be positive"));
    }
    let per = set.image_len();
    let out = size * size * 3;
    let mut pixels = vec![0u8; set.len() * out];
    pixels
        .par_chunks_mut(out)
        .zip(set.pixels.par_chunks(per))
        .for_each(|(dst, src)| {
            let image = Image {
                width: set.width,
                height: set.height,
                channels: set.channels,
                data: src.to_vec(),
            };
            let rgb = if image.channels == 3 {
                image
            } else {
                image.to_rgb()
            };
            let resized = if (rgb.width, rgb.height) == (size, size) {
                rgb.data
            } else {
                let buffer =
                    image::RgbImage::from_raw(rgb.width as u32, rgb.height as u32, rgb.data)
                        .expect("an RGB image holds width × height × 3 bytes");
                image::imageops::resize(&buffer, size as u32, size as u32, FilterType::Triangle)
                    .into_raw()
            };
            dst.copy_from_slice(&resized);
        });
    ImageSet::new(
        size,
        size,
        3,
        pixels,
        set.labels.clone(),
        set.classes.clone(),
    )
}

/// Resizes so that the shorter side is `size`, keeping the aspect ratio (the longer side is
/// truncated as torchvision does), with antialiased bilinear filtering.
pub fn resize_short_side(image: &Image, size: usize) -> Image {
    let (w, h) = (image.width, image.height);
    let (new_w, new_h) = if w <= h {
        (size, (size as f64 * h as f64 / w as f64) as usize)
    } else {
        ((size as f64 * w as f64 / h as f64) as usize, size)
    };
    if (new_w, new_h) == (w, h) {
        return image.clone();
    }
    let buffer = image::RgbImage::from_raw(w as u32, h as u32, image.data.clone())
        .expect("an RGB image holds width × height × 3 bytes");
    let resized =
        image::imageops::resize(&buffer, new_w as u32, new_h as u32, FilterType::Triangle);
    Image {
        width: new_w,
        height: new_h,
        channels: 3,
        data: resized.into_raw(),
    }
}

/// The central `size × size` square (offsets rounded as torchvision's `center_crop`).
///
/// # Panics
///
/// When the image is smaller than `size` on either side.
pub fn center_crop(image: &Image, size: usize) -> Image {
    assert!(
        image.width >= size && image.height >= size,
        "a {size}×{size} crop needs an image at least that large, got {}×{}",
        image.width,
        image.height
    );
    let top = ((image.height - size) as f64 / 2.0).round() as usize;
    let left = ((image.width - size) as f64 / 2.0).round() as usize;
    let c = image.channels;
    let mut data = Vec::with_capacity(size * size * c);
    for y in top..top + size {
        let row = (y * image.width + left) * c;
        data.extend_from_slice(&image.data[row..row + size * c]);
    }
    Image {
        width: size,
        height: size,
        channels: c,
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(width: usize, height: usize) -> Image {
        let data = (0..height)
            .flat_map(|y| (0..width).flat_map(move |x| [x as u8, y as u8, 7]))
            .collect();
        Image::new(width, height, 3, data).unwrap()
    }

    #[test]
    fn short_side_is_resized_keeping_aspect() {
        let landscape = resize_short_side(&ramp(100, 50), 20);
        assert_eq!((landscape.width, landscape.height), (40, 20));
        let portrait = resize_short_side(&ramp(30, 91), 10);
        assert_eq!((portrait.width, portrait.height), (10, 30));
    }

    #[test]
    fn centre_crop_takes_the_middle() {
        let crop = center_crop(&ramp(10, 8), 4);
        assert_eq!((crop.width, crop.height), (4, 4));
        // Offsets: left (10 − 4) / 2 = 3, top (8 − 4) / 2 = 2.
        assert_eq!(crop.pixel(0, 0), &[3, 2, 7]);
        assert_eq!(crop.pixel(3, 3), &[6, 5, 7]);
    }

    #[test]
    fn output_is_normalised_chw() {
        let preset = ClassificationPreset {
            resize_size: 4,
            crop_size: 4,
            mean: [0.0, 0.5, 0.0],
            std: [1.0, 0.5, 2.0],
        };
        let image = Image::filled(4, 4, 3, 255);
        let out = preset.apply(&image);
        assert_eq!(out.len(), 3 * 16);
        assert!(out[..16].iter().all(|v| (v - 1.0).abs() < 1e-6));
        assert!(out[16..32].iter().all(|v| (v - 1.0).abs() < 1e-6));
        assert!(out[32..].iter().all(|v| (v - 0.5).abs() < 1e-6));
        // Grey images are repeated to three channels.
        assert_eq!(preset.apply(&Image::filled(5, 4, 1, 255)).len(), 48);
    }

    #[test]
    fn sets_are_resized_to_rgb_squares() {
        let grey = ImageSet::new(
            2,
            2,
            1,
            vec![0, 255, 0, 255, 9, 9, 9, 9],
            vec![0, 1],
            vec!["a".into(), "b".into()],
        )
        .unwrap();
        let big = resize_set(&grey, 6).unwrap();
        assert_eq!(
            (big.width, big.height, big.channels, big.len()),
            (6, 6, 3, 2)
        );
        assert_eq!(big.labels, vec![0, 1]);
        // A constant image stays constant; channels are equal for grey input.
        assert!(big.pixels[108..].iter().all(|&v| v == 9));
        let first = &big.pixels[..108];
        assert!(first.chunks(3).all(|p| p[0] == p[1] && p[1] == p[2]));
        assert!(resize_set(&grey, 0).is_err());
    }

    #[test]
    fn presets_validate_and_scale() {
        assert!(ClassificationPreset::imagenet().validate().is_ok());
        let at_128 = ClassificationPreset::imagenet_at(128);
        assert_eq!((at_128.resize_size, at_128.crop_size), (146, 128));
        let bad = ClassificationPreset {
            resize_size: 100,
            ..ClassificationPreset::imagenet()
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn elongated_images_are_refused_before_resizing() {
        let dir = tempfile::tempdir().unwrap();
        let strip = dir.path().join("strip.png");
        image::RgbImage::new(1, 1000).save(&strip).unwrap();
        let err = ClassificationPreset::imagenet()
            .load(&strip)
            .unwrap_err()
            .to_string();
        assert!(err.contains("strip.png") && err.contains("1×1000"), "{err}");
    }
}

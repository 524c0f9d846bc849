//! In-memory images: one [`Image`], and a fixed-size labelled [`ImageSet`] kept as `u8`.

use crate::{DataError, Result};

/// An 8-bit image stored row-major with interleaved channels (HWC), as decoders produce it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Channels per pixel (1 for grey, 3 for RGB).
    pub channels: usize,
    /// `height * width * channels` bytes, HWC order.
    pub data: Vec<u8>,
}

impl Image {
    /// Wraps `data` (HWC) as an image, checking its length.
    pub fn new(width: usize, height: usize, channels: usize, data: Vec<u8>) -> Result<Self> {
        if data.len() != width * height * channels {
            return Err(DataError::invalid(
                "image",
                format!(
                    "{} bytes given for {width}x{height}x{channels} = {}",
                    data.len(),
                    width * height * channels
                ),
            ));
        }
        Ok(Self {
            width,
            height,
            channels,
            data,
        })
    }

    /// An image filled with `value`.
    pub fn filled(width: usize, height: usize, channels: usize, value: u8) -> Self {
        Self {
            width,
            height,
            channels,
            data: vec![value; width * height * channels],
        }
    }

    /// The `channels` bytes of pixel (x, y).
    pub fn pixel(&self, x: usize, y: usize) -> &[u8] {
        let at = (y * self.width + x) * self.channels;
        &self.data[at..at + self.channels]
    }

    /// The same image as three channels (grey is repeated), for display.
    pub fn to_rgb(&self) -> Image {
        match self.channels {
            3 => self.clone(),
            1 => Image {
                width: self.width,
                height: self.height,
                channels: 3,
                data: self.data.iter().flat_map(|&v| [v, v, v]).collect(),
            },
            c => Image {
                width: self.width,
                height: self.height,
                channels: 3,
                data: self
                    .data
                    .chunks_exact(c)
                    .flat_map(|p| [p[0], p[1 % c], p[2 % c]])
                    .collect(),
            },
        }
    }
}

/// A labelled set of same-sized 8-bit images held contiguously in memory (HWC per image).
///
/// CIFAR-10's 60,000 images take 184 MB this way; converting to `f32` happens per batch.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageSet {
    /// Width of every image.
    pub width: usize,
    /// Height of every image.
    pub height: usize,
    /// Channels of every image.
    pub channels: usize,
    /// All pixels, image after image.
    pub pixels: Vec<u8>,
    /// One class index per image.
    pub labels: Vec<usize>,
    /// Class names, indexed by label.
    pub classes: Vec<String>,
}

impl ImageSet {
    /// Builds a set, checking that pixels and labels agree and that every label names a class.
    pub fn new(
        width: usize,
        height: usize,
        channels: usize,
        pixels: Vec<u8>,
        labels: Vec<usize>,
        classes: Vec<String>,
    ) -> Result<Self> {
        let per = width * height * channels;
        if per == 0 || pixels.len() != per * labels.len() {
            return Err(DataError::invalid(
                "image set",
                format!(
                    "{} pixel bytes for {} images of {width}x{height}x{channels}",
                    pixels.len(),
                    labels.len()
                ),
            ));
        }
        if let Some(bad) = labels.iter().find(|&&l| l >= classes.len()) {
            return Err(DataError::invalid(
                "image set",
                format!("label {bad} but only {} classes", classes.len()),
            ));
        }
        Ok(Self {
            width,
            height,
            channels,
            pixels,
            labels,
            classes,
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether the set holds no image.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Bytes per image.
    pub fn image_len(&self) -> usize {
        self.width * self.height * self.channels
    }

    /// The pixels of image `index` (HWC).
    pub fn pixels_of(&self, index: usize) -> &[u8] {
        let per = self.image_len();
        &self.pixels[index * per..(index + 1) * per]
    }

    /// A copy of image `index`.
    pub fn image(&self, index: usize) -> Image {
        Image {
            width: self.width,
            height: self.height,
            channels: self.channels,
            data: self.pixels_of(index).to_vec(),
        }
    }

    /// How many images each class has, indexed by label.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        for &l in &self.labels {
            counts[l] += 1;
        }
        counts
    }

    /// The indices of the first `n` images of each class (fewer where a class has fewer), one
    /// list per class in label order: rows of a sample grid.
    pub fn first_of_each_class(&self, n: usize) -> Vec<Vec<usize>> {
        let mut rows = vec![Vec::new(); self.classes.len()];
        for (i, &l) in self.labels.iter().enumerate() {
            if rows[l].len() < n {
                rows[l].push(i);
            }
        }
        rows
    }

    /// A new set holding the images at `indices`, in that order.
    pub fn subset(&self, indices: &[usize]) -> ImageSet {
        let per = self.image_len();
        let mut pixels = Vec::with_capacity(indices.len() * per);
        for &i in indices {
            pixels.extend_from_slice(self.pixels_of(i));
        }
        ImageSet {
            width: self.width,
            height: self.height,
            channels: self.channels,
            pixels,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            classes: self.classes.clone(),
        }
    }

    /// Appends `other`'s images, which must have the same geometry and classes.
    pub fn extend(&mut self, other: ImageSet) -> Result<()> {
        if (other.width, other.height, other.channels) != (self.width, self.height, self.channels)
            || other.classes != self.classes
        {
            return Err(DataError::invalid(
                "image set",
                "cannot concatenate sets of different image sizes or classes",
            ));
        }
        self.pixels.extend_from_slice(&other.pixels);
        self.labels.extend_from_slice(&other.labels);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set() -> ImageSet {
        let pixels: Vec<u8> = (0..4 * 2 * 2).map(|v| v as u8).collect();
        ImageSet::new(
            2,
            2,
            1,
            pixels,
            vec![0, 1, 1, 0],
            vec!["a".into(), "b".into()],
        )
        .unwrap()
    }

    #[test]
    fn subset_copies_the_right_images() {
        let s = set().subset(&[2, 0]);
        assert_eq!(s.pixels, vec![8, 9, 10, 11, 0, 1, 2, 3]);
        assert_eq!(s.labels, vec![1, 0]);
        assert_eq!(set().class_counts(), vec![2, 2]);
    }

    #[test]
    fn mismatched_lengths_and_labels_are_rejected() {
        assert!(ImageSet::new(2, 2, 1, vec![0; 7], vec![0, 0], vec!["a".into()]).is_err());
        assert!(ImageSet::new(2, 2, 1, vec![0; 4], vec![3], vec!["a".into()]).is_err());
        assert!(Image::new(2, 2, 3, vec![0; 11]).is_err());
    }
}

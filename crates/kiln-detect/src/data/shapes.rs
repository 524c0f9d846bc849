//! *Shapes*: a seeded generator of instance-segmentation images — circles, squares, triangles
//! and crosses (the non-convex class) on textured backgrounds — with exact, occlusion-aware
//! instance masks, written as PNGs and COCO instances files so that any framework can train on
//! the very same images.
//!
//! Each image has 1 to `max_objects` shapes of random class, size, rotation and colour, drawn
//! back to front. A shape's mask is the pixels it still shows after the later shapes are drawn;
//! a shape is placed only where it hides no more than half of what each earlier shape still
//! shows, and keeps at least half of itself visible, so every annotated object is clearly there.
//! Boxes are the masks' tight boxes and areas their pixel counts, as in COCO.

use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{AnnotatedImage, Category, DetectionSet, Object, Rle, write_coco_instances};
use crate::{DetectError, Result};

/// The classes, in class-index order (COCO category ids 1…4).
pub const SHAPE_CLASSES: [&str; 4] = ["circle", "square", "triangle", "cross"];

/// How shapes images are generated.
#[derive(Clone, Debug, PartialEq)]
pub struct ShapesConfig {
    /// Image side in pixels (images are square).
    pub size: u32,
    /// Most shapes in an image (at least 1 each).
    pub max_objects: usize,
    /// Smallest and largest shape radius, as fractions of the image side.
    pub radius: [f32; 2],
    /// Seed of everything random.
    pub seed: u64,
}

impl Default for ShapesConfig {
    fn default() -> Self {
        Self {
            size: 128,
            max_objects: 6,
            radius: [0.07, 0.22],
            seed: 0,
        }
    }
}

impl ShapesConfig {
    /// Checks the settings, naming the first one out of range.
    pub fn validate(&self) -> Result<()> {
        if !(32..=4096).contains(&self.size) {
            return Err(DetectError::invalid(
                "shapes size",
                format!("{} is outside 32..=4096 pixels", self.size),
            ));
        }
        if !(1..=50).contains(&self.max_objects) {
            return Err(DetectError::invalid(
                "shapes max_objects",
                format!("{} is outside 1..=50", self.max_objects),
            ));
        }
        let [lo, hi] = self.radius;
        if !(lo > 0.0 && lo <= hi && hi <= 0.5) {
            return Err(DetectError::invalid(
                "shapes radius",
                format!("[{lo}, {hi}] must satisfy 0 < min <= max <= 0.5"),
            ));
        }
        Ok(())
    }
}

/// Interleaved RGB pixels of a square image.
struct RgbPixels {
    data: Vec<u8>,
}

/// One shape: class, centre, radius, rotation.
#[derive(Clone, Copy, Debug)]
struct Shape {
    class: usize,
    cx: f32,
    cy: f32,
    r: f32,
    angle: f32,
}

impl Shape {
    /// Whether the pixel centre `(x, y)` lies inside.
    fn contains(&self, x: f32, y: f32) -> bool {
        let (dx, dy) = (x - self.cx, y - self.cy);
        let (s, c) = self.angle.sin_cos();
        let (u, v) = (c * dx + s * dy, -s * dx + c * dy);
        let r = self.r;
        match self.class {
            0 => dx * dx + dy * dy <= r * r,
            1 => u.abs() <= r * 0.8 && v.abs() <= r * 0.8,
            2 => {
                // Equilateral, circumradius r, one vertex at angle -90° (before rotation).
                let half = r * 3f32.sqrt() / 2.0;
                v >= -r + (u.abs() / half) * (1.5 * r) && v <= 0.5 * r
            }
            _ => {
                let arm = r * 0.33;
                (u.abs() <= r && v.abs() <= arm) || (u.abs() <= arm && v.abs() <= r)
            }
        }
    }
}

/// A random colour at least `min_distance` (summed over channels) from `avoid`.
fn colour(rng: &mut ChaCha8Rng, avoid: [u8; 3], min_distance: i32) -> [u8; 3] {
    loop {
        let c = [rng.random::<u8>(), rng.random::<u8>(), rng.random::<u8>()];
        let d: i32 = (0..3)
            .map(|k| (i32::from(c[k]) - i32::from(avoid[k])).abs())
            .sum();
        if d >= min_distance {
            return c;
        }
    }
}

/// A textured background: a base colour, two random stripe patterns and pixel noise.
fn background(rng: &mut ChaCha8Rng, size: usize) -> (Vec<u8>, [u8; 3]) {
    let base = [
        rng.random_range(40..216u8),
        rng.random_range(40..216u8),
        rng.random_range(40..216u8),
    ];
    let waves: Vec<(f32, f32, f32, f32)> = (0..2)
        .map(|_| {
            let angle = rng.random_range(0.0..std::f32::consts::PI);
            let period = rng.random_range(4.0..24.0f32);
            let amplitude = rng.random_range(6.0..30.0f32);
            (
                angle.cos(),
                angle.sin(),
                std::f32::consts::TAU / period,
                amplitude,
            )
        })
        .collect();
    let mut data = vec![0u8; size * size * 3];
    for y in 0..size {
        for x in 0..size {
            let wave: f32 = waves
                .iter()
                .map(|&(c, s, k, a)| a * ((x as f32 * c + y as f32 * s) * k).sin())
                .sum();
            for ch in 0..3 {
                let noise = rng.random_range(-12.0..12.0f32);
                let v = f32::from(base[ch]) + wave * (0.6 + 0.2 * ch as f32) + noise;
                data[(y * size + x) * 3 + ch] = v.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
    (data, base)
}

/// One generated image: its RGB pixels and, per kept shape, class and mask (row-major 0/1).
struct Generated {
    image: RgbPixels,
    objects: Vec<(usize, Vec<u8>)>,
}

/// Draws one image.
fn generate_image(config: &ShapesConfig, rng: &mut ChaCha8Rng) -> Generated {
    let size = config.size as usize;
    let (mut data, base) = background(rng, size);
    // Which shape (index + 1) shows at each pixel; 0 for background.
    let mut owner = vec![0u16; size * size];
    let mut shapes: Vec<Shape> = Vec::new();
    let mut pixels_of: Vec<usize> = Vec::new();
    let wanted = rng.random_range(1..=config.max_objects);
    let side = config.size as f32;
    for _ in 0..wanted {
        for _attempt in 0..30 {
            let r = side * rng.random_range(config.radius[0]..=config.radius[1]);
            let shape = Shape {
                class: rng.random_range(0..SHAPE_CLASSES.len()),
                cx: rng.random_range(0.0..side),
                cy: rng.random_range(0.0..side),
                r,
                angle: rng.random_range(0.0..std::f32::consts::TAU),
            };
            let covered: Vec<usize> = (0..size * size)
                .filter(|&i| shape.contains((i % size) as f32 + 0.5, (i / size) as f32 + 0.5))
                .collect();
            // At least half of the shape inside the image and 40 pixels.
            let full = std::f32::consts::PI * r * r * 0.6;
            if covered.len() < 40 || (covered.len() as f32) < 0.5 * full {
                continue;
            }
            let mut hidden = vec![0usize; shapes.len()];
            for &i in &covered {
                if owner[i] > 0 {
                    hidden[usize::from(owner[i]) - 1] += 1;
                }
            }
            let hides_too_much = hidden
                .iter()
                .zip(&pixels_of)
                .any(|(&h, &n)| 2 * h > n || n - h < 40);
            if hides_too_much {
                continue;
            }
            let id = shapes.len() as u16 + 1;
            let fill = colour(rng, base, 150);
            let shade = rng.random_range(-0.5..0.5f32);
            for &i in &covered {
                if owner[i] > 0 {
                    pixels_of[usize::from(owner[i]) - 1] -= 1;
                }
                owner[i] = id;
                let t = ((i % size) as f32 - shape.cx) / shape.r.max(1.0);
                for ch in 0..3 {
                    let v = f32::from(fill[ch]) * (1.0 + 0.25 * shade * t);
                    data[i * 3 + ch] = v.round().clamp(0.0, 255.0) as u8;
                }
            }
            shapes.push(shape);
            pixels_of.push(covered.len());
            break;
        }
    }
    let objects = shapes
        .iter()
        .enumerate()
        .map(|(k, s)| {
            let id = k as u16 + 1;
            (s.class, owner.iter().map(|&o| u8::from(o == id)).collect())
        })
        .collect();
    Generated {
        image: RgbPixels { data },
        objects,
    }
}

/// Generates `count` images into `dir` (`000001.png`, …, ids from `first_id`) and returns
/// them as a data set with masks; the stream of images depends only on `config.seed`.
pub fn generate_shapes(
    config: &ShapesConfig,
    count: usize,
    first_id: u64,
    dir: &Path,
) -> Result<DetectionSet> {
    config.validate()?;
    std::fs::create_dir_all(dir).map_err(|e| DetectError::io(dir, e))?;
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let mut images = Vec::with_capacity(count);
    for k in 0..count {
        let generated = generate_image(config, &mut rng);
        let id = first_id + k as u64;
        let path: PathBuf = dir.join(format!("{id:06}.png"));
        let rgb = image::RgbImage::from_raw(config.size, config.size, generated.image.data)
            .expect("a size × size × 3 buffer");
        crate::draw::save_png(&rgb, &path)?;
        let objects = generated
            .objects
            .into_iter()
            .map(|(class, pixels)| {
                Object::from_mask(class, Rle::from_bitmap(&pixels, config.size, config.size))
            })
            .collect();
        images.push(AnnotatedImage {
            id,
            path,
            width: config.size,
            height: config.size,
            objects,
        });
    }
    Ok(DetectionSet {
        categories: shape_categories(),
        images,
    })
}

/// The four categories, ids 1…4.
pub fn shape_categories() -> Vec<Category> {
    SHAPE_CLASSES
        .iter()
        .enumerate()
        .map(|(i, name)| Category {
            id: i as u64 + 1,
            name: (*name).into(),
        })
        .collect()
}

/// Writes a train and a test split in COCO's layout: `out/train/`, `out/test/` and
/// `out/annotations/instances_{train,test}.json` (test images seeded apart from the training
/// ones, ids continuing after them). Returns the two sets.
pub fn write_shapes_dataset(
    config: &ShapesConfig,
    train: usize,
    test: usize,
    out: &Path,
) -> Result<(DetectionSet, DetectionSet)> {
    let annotations = out.join("annotations");
    std::fs::create_dir_all(&annotations).map_err(|e| DetectError::io(&annotations, e))?;
    let train_set = generate_shapes(config, train, 1, &out.join("train"))?;
    let test_config = ShapesConfig {
        seed: config.seed ^ 0x5eed_7e57,
        ..config.clone()
    };
    let test_set = generate_shapes(&test_config, test, train as u64 + 1, &out.join("test"))?;
    write_coco_instances(&train_set, &annotations.join("instances_train.json"))?;
    write_coco_instances(&test_set, &annotations.join("instances_test.json"))?;
    Ok((train_set, test_set))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::read_coco_instances;

    #[test]
    fn shapes_have_exact_disjoint_masks_and_tight_boxes() {
        let dir = tempfile::tempdir().unwrap();
        let config = ShapesConfig {
            size: 64,
            seed: 3,
            ..ShapesConfig::default()
        };
        let set = generate_shapes(&config, 6, 1, dir.path()).unwrap();
        assert_eq!(set.images.len(), 6);
        let mut classes = std::collections::HashSet::new();
        for im in &set.images {
            assert!(!im.objects.is_empty() && im.objects.len() <= 6);
            let mut seen = vec![0u8; 64 * 64];
            for o in &im.objects {
                let mask = o.mask.as_ref().unwrap();
                assert!(mask.area() >= 40);
                assert_eq!(o.area, mask.area() as f32);
                assert_eq!(o.bbox, mask.bbox());
                for (s, m) in seen.iter_mut().zip(mask.to_bitmap()) {
                    assert!(*s + m <= 1, "masks overlap");
                    *s += m;
                }
                classes.insert(o.class);
            }
            // The file holds what was generated.
            let decoded = kiln_data::image_folder::decode_image(&im.path, None).unwrap();
            assert_eq!((decoded.width, decoded.height), (64, 64));
        }
        assert!(classes.len() >= 3, "{classes:?}");
        // Same seed, same images.
        let again = generate_shapes(&config, 6, 1, &dir.path().join("again")).unwrap();
        for (a, b) in set.images.iter().zip(&again.images) {
            assert_eq!(a.objects, b.objects);
            assert_eq!(
                std::fs::read(&a.path).unwrap(),
                std::fs::read(&b.path).unwrap()
            );
        }
    }

    #[test]
    fn the_dataset_is_written_as_coco_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let config = ShapesConfig {
            size: 48,
            ..ShapesConfig::default()
        };
        let (train, test) = write_shapes_dataset(&config, 3, 2, dir.path()).unwrap();
        let back = read_coco_instances(
            &dir.path().join("annotations/instances_train.json"),
            &dir.path().join("train"),
        )
        .unwrap();
        assert_eq!(back, train);
        assert_eq!(test.images[0].id, 4);
        assert_ne!(test.images[0].objects, train.images[0].objects);
    }

    #[test]
    fn bad_settings_are_refused() {
        let bad = ShapesConfig {
            radius: [0.3, 0.2],
            ..ShapesConfig::default()
        };
        assert!(bad.validate().unwrap_err().to_string().contains("radius"));
        let tiny = ShapesConfig {
            size: 8,
            ..ShapesConfig::default()
        };
        assert!(tiny.validate().is_err());
    }
}

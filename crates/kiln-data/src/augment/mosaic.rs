//! YOLOv4/v5's mosaic: four training images, each scaled to a `size` long side, meet at a
//! random point of a `size`×`size` window, so every training image shows objects cut at new
//! places, at new positions and beside new context.
//!
//! The layout is YOLOv5's (`load_mosaic`): on a canvas of twice the size the junction is drawn
//! uniformly from its central half, the first image ends at it from the top left, the second
//! from the top right, the third from the bottom left, the fourth starts at it towards the
//! bottom right; the result is the canvas's central window. Boxes are clipped to their
//! image's visible part and dropped when less than `min_visible` of their area shows; masks
//! move with their pixels (label masks are [`Mask::IGNORE`] where no image is).

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::geometry::{crop_sample, drop_hidden_boxes, resize_sample};
use super::{Mask, PaddingMode, Sample, Target};
use crate::Image;

/// Four images in one (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct Mosaic {
    /// Side of the square result; each image is scaled to this long side first.
    pub size: usize,
    /// Probability that an item becomes a mosaic (otherwise it passes unchanged).
    pub p: f32,
    /// Boxes showing less than this fraction of their area are dropped.
    pub min_visible: f32,
    /// Grey level of the pixels no image covers (YOLOv5's 114).
    pub fill: u8,
}

/// Where a mixing step such as [`Mosaic`] finds the other items it combines an item with.
pub trait Partners {
    /// Number of items (0: nothing to mix with).
    fn count(&self) -> usize;
    /// The (unaugmented) sample of item `index < count()`.
    fn sample(&self, index: usize) -> Sample;
}

/// No partners: mixing steps leave samples as they are.
pub struct NoPartners;

impl Partners for NoPartners {
    fn count(&self) -> usize {
        0
    }
    fn sample(&self, _index: usize) -> Sample {
        unreachable!("NoPartners has no items")
    }
}

impl Mosaic {
    /// `sample` mixed with three partners drawn from `partners` (with probability `p`), or
    /// `sample` unchanged. Draws its randomness from `rng` either way.
    pub fn apply(&self, sample: Sample, rng: &mut ChaCha8Rng, partners: &dyn Partners) -> Sample {
        let chosen = rng.random::<f32>() < self.p;
        let n = partners.count();
        if !chosen || n == 0 {
            return sample;
        }
        let others = [0; 3].map(|_| partners.sample(rng.random_range(0..n)));
        let [a, b, c] = others;
        // The canvas's central half, in the coordinates of the window it becomes.
        let s = self.size;
        let junction = [0; 2].map(|_| rng.random_range(0..=s) as isize);
        self.combine([sample, a, b, c], junction)
    }

    /// The four samples meeting at `junction` (window coordinates, each in `0..=size`).
    pub fn combine(&self, samples: [Sample; 4], junction: [isize; 2]) -> Sample {
        let s = self.size;
        let [jx, jy] = junction;
        // Photos of one channel count stay so; a mix (grey beside colour) becomes RGB.
        let channels = samples[0].image.channels;
        let same = samples.iter().all(|x| x.image.channels == channels);
        let samples = samples.map(|x| {
            if same {
                x
            } else {
                Sample {
                    image: x.image.to_rgb(),
                    ..x
                }
            }
        });
        let channels = samples[0].image.channels;
        let mut image = Image {
            width: s,
            height: s,
            channels,
            data: vec![self.fill; s * s * channels],
        };
        let label_mask = matches!(samples[0].target, Target::Mask(_));
        let mut mask = Mask {
            width: s,
            height: s,
            data: vec![Mask::IGNORE; s * s],
        };
        let mut parts = Vec::with_capacity(4);
        for (quadrant, sample) in samples.into_iter().enumerate() {
            let sample = scale_to_long_side(sample, s);
            let (w, h) = (sample.image.width as isize, sample.image.height as isize);
            // The image's top-left corner in window coordinates.
            let x0 = if quadrant % 2 == 0 { jx - w } else { jx };
            let y0 = if quadrant < 2 { jy - h } else { jy };
            let visible = (-x0 as f32, -y0 as f32, s as f32, s as f32);
            let sample = drop_hidden_boxes(sample, visible, self.min_visible);
            let part = crop_sample(sample, -x0, -y0, s, s, PaddingMode::Zero);
            // The rows and columns of the window this image covers.
            let xs = x0.clamp(0, s as isize) as usize..(x0 + w).clamp(0, s as isize) as usize;
            let ys = y0.clamp(0, s as isize) as usize..(y0 + h).clamp(0, s as isize) as usize;
            for y in ys {
                let row = (y * s + xs.start) * channels..(y * s + xs.end) * channels;
                image.data[row.clone()].copy_from_slice(&part.image.data[row]);
                if let Target::Mask(m) = &part.target {
                    let row = y * s + xs.start..y * s + xs.end;
                    mask.data[row.clone()].copy_from_slice(&m.data[row]);
                }
            }
            parts.push(part.target);
        }
        let target = if label_mask {
            Target::Mask(mask)
        } else {
            merge_objects(parts, s)
        };
        Sample { image, target }
    }
}

/// `sample` resized so its long side is `side` (aspect ratio kept).
fn scale_to_long_side(sample: Sample, side: usize) -> Sample {
    let (w, h) = (sample.image.width, sample.image.height);
    let scale = side as f32 / w.max(h).max(1) as f32;
    let (nw, nh) = (
        ((w as f32 * scale).round() as usize).clamp(1, side),
        ((h as f32 * scale).round() as usize).clamp(1, side),
    );
    resize_sample(sample, nw, nh)
}

/// The objects of the four `side`×`side` parts in one target: instances when any part has
/// masks.
fn merge_objects(parts: Vec<Target>, side: usize) -> Target {
    let (mut boxes, mut labels, mut masks) = (Vec::new(), Vec::new(), Vec::new());
    let with_masks = parts.iter().any(|p| matches!(p, Target::Instances { .. }));
    for part in parts {
        match part {
            Target::Boxes {
                boxes: b,
                labels: l,
            } => {
                // Objects of an image without masks, beside images with them: empty masks.
                if with_masks {
                    masks.extend(b.iter().map(|_| Mask::zeros(side, side)));
                }
                boxes.extend(b);
                labels.extend(l);
            }
            Target::Instances {
                boxes: b,
                labels: l,
                masks: m,
            } => {
                boxes.extend(b);
                labels.extend(l);
                masks.extend(m);
            }
            Target::Label(_) | Target::Mask(_) => {}
        }
    }
    Target::objects(boxes, labels, with_masks.then_some(masks))
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::super::{BoundingBox, Pipeline, TransformConfig};
    use super::*;

    fn bb(x1: f32, y1: f32, x2: f32, y2: f32) -> BoundingBox {
        BoundingBox { x1, y1, x2, y2 }
    }

    /// A `w`×`h` image of grey level `v`.
    fn solid(w: usize, h: usize, v: u8) -> Image {
        Image::new(w, h, 3, vec![v; w * h * 3]).unwrap()
    }

    fn mosaic(min_visible: f32) -> Mosaic {
        Mosaic {
            size: 20,
            p: 1.0,
            min_visible,
            fill: 114,
        }
    }

    /// Four images of levels 10, 60, 110, 160 and sizes 40×20, 10×20, 20×20, 5×5 (scaled to
    /// 20×10, 10×20, 20×20, 20×20); each box's label is its image's quadrant.
    fn four(boxes: [Vec<BoundingBox>; 4]) -> [Sample; 4] {
        let sizes = [(40, 20), (10, 20), (20, 20), (5, 5)];
        let mut k = 0;
        boxes.map(|b| {
            let (w, h) = sizes[k];
            let sample = Sample {
                image: solid(w, h, 10 + 50 * k as u8),
                target: Target::Boxes {
                    labels: vec![k; b.len()],
                    boxes: b,
                },
            };
            k += 1;
            sample
        })
    }

    fn pixel(image: &Image, x: usize, y: usize) -> u8 {
        image.data[(y * image.width + x) * 3]
    }

    #[test]
    fn four_images_meet_at_the_junction_with_their_boxes() {
        let samples = four([
            vec![bb(20.0, 0.0, 40.0, 20.0), bb(0.0, 0.0, 10.0, 10.0)],
            vec![bb(0.0, 10.0, 10.0, 20.0)],
            vec![bb(0.0, 0.0, 20.0, 20.0)],
            vec![bb(1.0, 1.0, 3.0, 3.0)],
        ]);
        let out = mosaic(0.2).combine(samples, [8, 12]);
        assert_eq!((out.image.width, out.image.height), (20, 20));
        // First image left of and above the junction (rows 2..12), second right of it
        // (columns 8..18), third below-left, fourth below-right; grey elsewhere.
        assert_eq!(pixel(&out.image, 0, 2), 10);
        assert_eq!(pixel(&out.image, 7, 11), 10);
        assert_eq!(pixel(&out.image, 0, 1), 114);
        assert_eq!(pixel(&out.image, 8, 0), 60);
        assert_eq!(pixel(&out.image, 17, 11), 60);
        assert_eq!(pixel(&out.image, 18, 5), 114);
        assert_eq!(pixel(&out.image, 0, 12), 110);
        assert_eq!(pixel(&out.image, 7, 19), 110);
        assert_eq!(pixel(&out.image, 8, 12), 160);
        assert_eq!(pixel(&out.image, 19, 19), 160);
        let Target::Boxes { boxes, labels } = out.target else {
            panic!("boxes expected")
        };
        // The first image's right box shows 80 % of itself; its left box and the third
        // image's box (16 % visible, under min_visible 0.2) are gone; the fourth image's box,
        // scaled 4×, hangs half out at the bottom.
        assert_eq!(labels, vec![0, 1, 3]);
        assert_eq!(
            boxes,
            vec![
                bb(0.0, 2.0, 8.0, 12.0),
                bb(8.0, 2.0, 18.0, 12.0),
                bb(12.0, 16.0, 20.0, 20.0)
            ]
        );
    }

    #[test]
    fn a_grey_photo_beside_colour_ones_becomes_rgb() {
        let mut samples = four([vec![], vec![], vec![], vec![]]);
        samples[1].image = Image::new(10, 20, 1, vec![60; 200]).unwrap();
        let out = mosaic(0.1).combine(samples, [8, 12]);
        assert_eq!(out.image.channels, 3);
        assert_eq!(pixel(&out.image, 8, 0), 60);
        assert_eq!(out.image.data[2], 114);
    }

    #[test]
    fn a_lower_min_visible_keeps_a_box_mostly_cut_away() {
        let samples = four([vec![], vec![], vec![bb(0.0, 0.0, 20.0, 20.0)], vec![]]);
        let Target::Boxes { boxes, labels } = mosaic(0.1).combine(samples, [8, 12]).target else {
            panic!("boxes expected")
        };
        assert_eq!((boxes, labels), (vec![bb(0.0, 12.0, 8.0, 20.0)], vec![2]));
    }

    #[test]
    fn label_masks_follow_their_pixels_and_are_ignored_where_no_image_is() {
        let samples = four([vec![], vec![], vec![], vec![]]).map(|s| {
            let (w, h) = (s.image.width, s.image.height);
            let level = s.image.data[0];
            Sample {
                target: Target::Mask(Mask {
                    width: w,
                    height: h,
                    data: vec![level / 50; w * h],
                }),
                ..s
            }
        });
        let out = mosaic(0.1).combine(samples, [8, 12]);
        let Target::Mask(m) = &out.target else {
            panic!("a mask expected")
        };
        for y in 0..20 {
            for x in 0..20 {
                let v = pixel(&out.image, x, y);
                let want = if v == 114 { Mask::IGNORE } else { v / 50 };
                assert_eq!(m.data[y * 20 + x], want, "({x}, {y})");
            }
        }
    }

    #[test]
    fn instance_masks_stay_on_their_boxes() {
        let samples = four([vec![], vec![bb(2.0, 10.0, 6.0, 16.0)], vec![], vec![]]).map(|s| {
            let Target::Boxes { boxes, labels } = s.target else {
                unreachable!()
            };
            let (w, h) = (s.image.width, s.image.height);
            let masks = boxes
                .iter()
                .map(|b| {
                    let mut data = vec![0; w * h];
                    for y in b.y1 as usize..b.y2 as usize {
                        data[y * w + b.x1 as usize..y * w + b.x2 as usize].fill(1);
                    }
                    Mask {
                        width: w,
                        height: h,
                        data,
                    }
                })
                .collect();
            Sample {
                target: Target::Instances {
                    boxes,
                    labels,
                    masks,
                },
                ..s
            }
        });
        let Target::Instances { boxes, masks, .. } = mosaic(0.1).combine(samples, [8, 12]).target
        else {
            panic!("instances expected")
        };
        // The second image starts at (8, −8): its box moves to (10, 2, 14, 8).
        assert_eq!(boxes, vec![bb(10.0, 2.0, 14.0, 8.0)]);
        let on: Vec<usize> = (0..400).filter(|&i| masks[0].data[i] == 1).collect();
        assert_eq!(on.len(), 24);
        assert!(
            on.iter()
                .all(|&i| (10..14).contains(&(i % 20)) && (2..8).contains(&(i / 20)))
        );
    }

    struct Items(Vec<Sample>);

    impl Partners for Items {
        fn count(&self) -> usize {
            self.0.len()
        }
        fn sample(&self, index: usize) -> Sample {
            self.0[index].clone()
        }
    }

    fn config(p: f32) -> Vec<TransformConfig> {
        vec![
            TransformConfig::Mosaic {
                size: 20,
                p,
                min_visible: 0.1,
                fill: 114,
            },
            TransformConfig::HorizontalFlip { p: 0.5 },
        ]
    }

    #[test]
    fn the_pipeline_mixes_seeded_partners_with_probability_p() {
        let items = Items(
            four([
                vec![bb(0.0, 0.0, 40.0, 20.0)],
                vec![bb(0.0, 0.0, 10.0, 20.0)],
                vec![bb(0.0, 0.0, 20.0, 20.0)],
                vec![bb(0.0, 0.0, 5.0, 5.0)],
            ])
            .to_vec(),
        );
        let pipeline = Pipeline::from_config(&config(1.0), 3).unwrap();
        assert!(pipeline.mixes_items() && !pipeline.is_identity());
        let first = items.0[0].clone();
        let a = pipeline.apply_mixing(first.clone(), 2, 0, &items);
        assert_eq!(a, pipeline.apply_mixing(first.clone(), 2, 0, &items));
        assert_ne!(a, pipeline.apply_mixing(first.clone(), 3, 0, &items));
        assert_eq!((a.image.width, a.image.height), (20, 20));
        // Over many draws every partner level shows up.
        let mut seen = [false; 4];
        for epoch in 0..20 {
            let out = pipeline.apply_mixing(first.clone(), epoch, 0, &items);
            for v in out.image.data.iter().step_by(3) {
                if let Some(k) = [10u8, 60, 110, 160].iter().position(|l| l == v) {
                    seen[k] = true;
                }
            }
        }
        assert_eq!(seen, [true; 4]);
        // p = 0 and no partners leave the item whole (flipped or not).
        let never = Pipeline::from_config(&config(0.0), 3).unwrap();
        let whole = never.apply_mixing(first.clone(), 0, 0, &items);
        assert_eq!((whole.image.width, whole.image.height), (40, 20));
        let alone = pipeline.apply(first.clone(), 0, 0);
        assert_eq!((alone.image.width, alone.image.height), (40, 20));
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        assert_eq!(
            mosaic(0.1).apply(first.clone(), &mut rng, &NoPartners),
            first
        );
    }

    #[test]
    fn a_mosaic_not_first_or_on_class_labels_is_refused() {
        let mut steps = config(1.0);
        steps.reverse();
        let err = TransformConfig::validate_steps(&steps)
            .unwrap_err()
            .to_string();
        assert!(err.contains("first [[augment]] step"), "{err}");
        let err = Pipeline::for_class_labels(&config(1.0), 0)
            .unwrap_err()
            .to_string();
        assert!(err.contains("class label"), "{err}");
        assert!(Pipeline::for_class_labels(&config(1.0)[1..], 0).is_ok());
        for bad in [
            TransformConfig::Mosaic {
                size: 20,
                p: 1.5,
                min_visible: 0.1,
                fill: 0,
            },
            TransformConfig::Mosaic {
                size: 1,
                p: 1.0,
                min_visible: 0.1,
                fill: 0,
            },
            TransformConfig::Mosaic {
                size: 20,
                p: 1.0,
                min_visible: 2.0,
                fill: 0,
            },
        ] {
            assert!(
                TransformConfig::validate_steps(std::slice::from_ref(&bad)).is_err(),
                "{bad:?}"
            );
        }
    }
}

//! Binary instance masks as COCO stores them: run-length encoding (RLE) in column-major order.
//!
//! An [`Rle`] of an `h × w` mask is a list of run lengths over its pixels read column by column
//! (down the first column, then the second, …), alternating background and foreground and
//! starting with background (a first run of 0 when the mask starts with a foreground pixel).
//! The counts sum to `h × w`. COCO files hold it either uncompressed (`{"size": [h, w],
//! "counts": [..]}`) or compressed as a string ([`Rle::to_compressed`]), and area, box and
//! IoU are computed on the runs without unpacking them, as pycocotools' `mask` module does.

use super::BoundingBox;

/// A binary mask, run-length encoded in column-major order (COCO's RLE).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Rle {
    /// Rows.
    pub height: u32,
    /// Columns.
    pub width: u32,
    /// Run lengths, background first; they sum to `height × width`.
    pub counts: Vec<u32>,
}

impl Rle {
    /// An RLE from its counts, checked to sum to `height × width`.
    pub fn from_counts(counts: Vec<u32>, height: u32, width: u32) -> Result<Self, String> {
        let total: u64 = counts.iter().map(|&c| u64::from(c)).sum();
        let pixels = u64::from(height) * u64::from(width);
        if total != pixels {
            return Err(format!(
                "RLE counts sum to {total}, but the mask has {height}×{width} = {pixels} pixels"
            ));
        }
        Ok(Self {
            height,
            width,
            counts,
        })
    }

    /// An all-background mask.
    pub fn empty(height: u32, width: u32) -> Self {
        Self {
            height,
            width,
            counts: vec![height * width],
        }
    }

    /// Encodes a row-major `height × width` mask (any non-zero value is foreground).
    ///
    /// # Panics
    /// If `pixels.len() != height × width`.
    pub fn from_bitmap(pixels: &[u8], height: u32, width: u32) -> Self {
        let (h, w) = (height as usize, width as usize);
        assert_eq!(pixels.len(), h * w, "bitmap is not height × width");
        let column_major: Vec<u8> = (0..w)
            .flat_map(|x| (0..h).map(move |y| pixels[y * w + x]))
            .collect();
        Self::from_column_major(&column_major, height, width)
    }

    /// The row-major mask, 1 for foreground and 0 for background.
    pub fn to_bitmap(&self) -> Vec<u8> {
        let (h, w) = (self.height as usize, self.width as usize);
        let mut pixels = vec![0u8; h * w];
        for (start, len) in self.foreground_runs() {
            for i in start..start + len {
                pixels[(i % h) * w + i / h] = 1;
            }
        }
        pixels
    }

    /// `(start, length)` of each foreground run, as column-major pixel indices.
    pub fn foreground_runs(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        let mut at = 0usize;
        self.counts.iter().enumerate().filter_map(move |(i, &c)| {
            let start = at;
            at += c as usize;
            (i % 2 == 1 && c > 0).then_some((start, c as usize))
        })
    }

    /// Foreground pixels.
    pub fn area(&self) -> u64 {
        self.counts
            .iter()
            .skip(1)
            .step_by(2)
            .map(|&c| u64::from(c))
            .sum()
    }

    /// The tightest box around the foreground in continuous pixel coordinates (pycocotools'
    /// `toBbox` as corners: `x1` is the first column, `x2` one past the last), all zero when
    /// the mask is empty.
    pub fn bbox(&self) -> BoundingBox {
        let h = self.height as usize;
        let (mut x1, mut y1, mut x2, mut y2) = (usize::MAX, usize::MAX, 0, 0);
        for (start, len) in self.foreground_runs() {
            let end = start + len - 1;
            let (c0, c1) = (start / h, end / h);
            let (r0, r1) = if c0 == c1 {
                (start % h, end % h)
            } else {
                (0, h - 1)
            };
            x1 = x1.min(c0);
            x2 = x2.max(c1 + 1);
            y1 = y1.min(r0);
            y2 = y2.max(r1 + 1);
        }
        if x1 == usize::MAX {
            return BoundingBox {
                x1: 0.0,
                y1: 0.0,
                x2: 0.0,
                y2: 0.0,
            };
        }
        BoundingBox {
            x1: x1 as f32,
            y1: y1 as f32,
            x2: x2 as f32,
            y2: y2 as f32,
        }
    }

    /// Foreground pixels shared with `other` (0 when the sizes differ).
    pub fn intersection_area(&self, other: &Rle) -> u64 {
        if (self.height, self.width) != (other.height, other.width) {
            return 0;
        }
        let mut a = self.foreground_runs().peekable();
        let mut b = other.foreground_runs().peekable();
        let mut shared = 0u64;
        while let (Some(&(sa, la)), Some(&(sb, lb))) = (a.peek(), b.peek()) {
            let (ea, eb) = (sa + la, sb + lb);
            let overlap = ea.min(eb).saturating_sub(sa.max(sb));
            shared += overlap as u64;
            if ea <= eb {
                a.next();
            } else {
                b.next();
            }
        }
        shared
    }

    /// The union of masks of one size (an empty mask of `height × width` for none).
    pub fn union(masks: &[Rle], height: u32, width: u32) -> Self {
        match masks {
            [] => Self::empty(height, width),
            [one] => one.clone(),
            _ => {
                let mut pixels = vec![0u8; height as usize * width as usize];
                for m in masks {
                    for (start, len) in m.foreground_runs() {
                        pixels[start..start + len].fill(1);
                    }
                }
                Self::from_column_major(&pixels, height, width)
            }
        }
    }

    /// Encodes a mask given in column-major order.
    fn from_column_major(pixels: &[u8], height: u32, width: u32) -> Self {
        let mut counts = Vec::new();
        let (mut current, mut run) = (0u8, 0u32);
        for &p in pixels {
            let p = u8::from(p != 0);
            if p != current {
                counts.push(run);
                current = p;
                run = 0;
            }
            run += 1;
        }
        counts.push(run);
        Self {
            height,
            width,
            counts,
        }
    }

    /// The counts as COCO's compressed string (pycocotools' `rleToString`): each count,
    /// minus the count two places before it from the fourth on, in little-endian groups of
    /// 5 bits with a continuation bit, offset into printable ASCII by 48.
    pub fn to_compressed(&self) -> String {
        let mut s = String::new();
        for (i, &c) in self.counts.iter().enumerate() {
            let mut x = i64::from(c);
            if i > 2 {
                x -= i64::from(self.counts[i - 2]);
            }
            loop {
                let mut chunk = (x & 0x1f) as u8;
                x >>= 5;
                let more = if chunk & 0x10 != 0 { x != -1 } else { x != 0 };
                if more {
                    chunk |= 0x20;
                }
                s.push(char::from(chunk + 48));
                if !more {
                    break;
                }
            }
        }
        s
    }

    /// Decodes [`Rle::to_compressed`]'s string for a `height × width` mask, checking that the
    /// characters are valid and the counts non-negative and summing to `height × width`.
    pub fn from_compressed(text: &str, height: u32, width: u32) -> Result<Self, String> {
        let bytes = text.as_bytes();
        let mut counts: Vec<u32> = Vec::new();
        let mut p = 0;
        while p < bytes.len() {
            let (mut x, mut k) = (0i64, 0u32);
            loop {
                let Some(&b) = bytes.get(p) else {
                    return Err("the compressed RLE string ends inside a number".into());
                };
                if !(48..48 + 64).contains(&b) {
                    return Err(format!(
                        "the compressed RLE string has the character {:?} at {p}",
                        char::from(b)
                    ));
                }
                if k >= 12 {
                    return Err("the compressed RLE string has a number too long".into());
                }
                let c = i64::from(b - 48);
                x |= (c & 0x1f) << (5 * k);
                p += 1;
                k += 1;
                if c & 0x20 == 0 {
                    if c & 0x10 != 0 {
                        x |= -1i64 << (5 * k);
                    }
                    break;
                }
            }
            let m = counts.len();
            if m > 2 {
                x += i64::from(counts[m - 2]);
            }
            let count = u32::try_from(x)
                .map_err(|_| format!("the compressed RLE string decodes to a count of {x}"))?;
            counts.push(count);
        }
        Self::from_counts(counts, height, width)
    }

    /// Intersection over union with `other` as pycocotools' `maskUtils.iou` computes it: for
    /// a crowd region (`crowd`), the union is this mask's area alone. 0 when the union is
    /// empty.
    pub fn iou(&self, other: &Rle, crowd: bool) -> f64 {
        let inter = self.intersection_area(other) as f64;
        let union = if crowd {
            self.area() as f64
        } else {
            (self.area() + other.area()) as f64 - inter
        };
        if union > 0.0 { inter / union } else { 0.0 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 3×4 mask
    /// ```text
    /// 0 1 1 0
    /// 0 1 0 0
    /// 1 1 0 0
    /// ```
    fn sample() -> (Vec<u8>, Rle) {
        let pixels = vec![0, 1, 1, 0, 0, 1, 0, 0, 1, 1, 0, 0];
        // Column-major: col 0 = 0,0,1; col 1 = 1,1,1; col 2 = 1,0,0; col 3 = 0,0,0.
        // Runs: 2 zeros, 5 ones (col 0 row 2, col 1, col 2 row 0), 5 zeros.
        let rle = Rle {
            height: 3,
            width: 4,
            counts: vec![2, 5, 5],
        };
        (pixels, rle)
    }

    #[test]
    fn encoding_is_column_major_and_starts_with_background() {
        let (pixels, rle) = sample();
        assert_eq!(Rle::from_bitmap(&pixels, 3, 4), rle);
        assert_eq!(rle.to_bitmap(), pixels);
        let starts_on = Rle::from_bitmap(&[1, 0], 2, 1);
        assert_eq!(starts_on.counts, vec![0, 1, 1]);
    }

    #[test]
    fn area_and_box_are_read_from_the_runs() {
        let (_, rle) = sample();
        assert_eq!(rle.area(), 5);
        let b = rle.bbox();
        assert_eq!((b.x1, b.y1, b.x2, b.y2), (0.0, 0.0, 3.0, 3.0));
        let corner = Rle::from_bitmap(&[0, 0, 0, 1], 2, 2);
        let b = corner.bbox();
        assert_eq!((b.x1, b.y1, b.x2, b.y2), (1.0, 1.0, 2.0, 2.0));
        assert_eq!(Rle::empty(4, 4).bbox().x2, 0.0);
    }

    #[test]
    fn iou_counts_shared_pixels_and_crowd_uses_the_detection_area() {
        let (pixels, a) = sample();
        // b: the top row only (pixels (0,1) and (0,2) are shared with a).
        let mut top = vec![0u8; 12];
        top[..4].fill(1);
        let b = Rle::from_bitmap(&top, 3, 4);
        assert_eq!(a.intersection_area(&b), 2);
        assert!((a.iou(&b, false) - 2.0 / 7.0).abs() < 1e-12);
        assert!((a.iou(&b, true) - 2.0 / 5.0).abs() < 1e-12);
        assert_eq!(a.iou(&Rle::from_bitmap(&pixels, 3, 4), false), 1.0);
        assert_eq!(Rle::empty(3, 4).iou(&Rle::empty(3, 4), false), 0.0);
    }

    #[test]
    fn compressed_strings_match_pycocotools() {
        // Counts 2, 5, 5 → '2' (48 + 2), '5', '5' (no differences before the fourth count).
        let (_, rle) = sample();
        assert_eq!(rle.to_compressed(), "255");
        // A fourth count is stored minus the second: [0, 3, 1, 4] → 0, 3, 1, 4 - 3 = 1.
        let r = Rle::from_counts(vec![0, 3, 1, 4], 4, 2).unwrap();
        assert_eq!(r.to_compressed(), "0311");
        // Large and negative differences use continuation and sign bits.
        let r = Rle::from_counts(vec![1000, 40, 7, 1], 1048, 1).unwrap();
        let s = r.to_compressed();
        // 1000 = 0b11111_01000: chunks 8 (continued: 'X') and 31 (its sign bit is set, so a
        // chunk 0 follows: 'o', '0'); 40: 'X', '1'; 7: '7'; 1 - 40 = -39: 25 (continued:
        // 'i') and 30 ('N'). pycocotools' `mask.frPyObjects` gives the same string.
        assert_eq!(s, "Xo0X17iN");
        assert_eq!(Rle::from_compressed(&s, 1048, 1).unwrap(), r);
    }

    #[test]
    fn bad_compressed_strings_are_errors() {
        assert!(
            Rle::from_compressed("255", 3, 5)
                .unwrap_err()
                .contains("sum to 12")
        );
        assert!(Rle::from_compressed("2 5", 3, 4).is_err());
        assert!(
            Rle::from_compressed("X", 3, 4)
                .unwrap_err()
                .contains("ends inside")
        );
        assert!(Rle::from_counts(vec![1, 2], 2, 2).is_err());
    }

    #[test]
    fn union_covers_every_mask() {
        let a = Rle::from_bitmap(&[1, 0, 0, 0], 2, 2);
        let b = Rle::from_bitmap(&[0, 0, 0, 1], 2, 2);
        let u = Rle::union(&[a, b], 2, 2);
        assert_eq!(u.to_bitmap(), vec![1, 0, 0, 1]);
        assert_eq!(Rle::union(&[], 2, 3).area(), 0);
    }
}

//! Instances from a semantic label map: the 8-connected components of each chosen class,
//! by burn-vision's `connected_components` on the backends that have it (Flex, the cubecl
//! backends) and by the same rule on the host elsewhere (ndarray).
//!
//! A component is every pixel of one class reachable from another through the 8 neighbours,
//! so touching objects of one class — two cars parked bumper to bumper — merge into one
//! instance: a semantic label map cannot tell them apart.

use burn::tensor::Device;

use crate::data::Rle;

/// burn-vision's labels of `mask` when it implements its ops for `device` in this build.
#[cfg(any(feature = "flex", feature = "wgpu"))]
fn vision_components(mask: &[bool], [w, h]: [usize; 2], device: &Device) -> Option<Vec<i64>> {
    use burn::backend::DispatchDevice;
    use burn::tensor::{Bool, Int, Tensor, TensorData};
    use burn_vision::{ConnectedComponents, Connectivity};
    let device = device.clone().inner();
    #[allow(unreachable_patterns)]
    let supported = match device.as_dispatch() {
        #[cfg(feature = "flex")]
        DispatchDevice::Flex(_) => true,
        #[cfg(feature = "wgpu")]
        DispatchDevice::Cube(_) => true,
        _ => false,
    };
    if !supported {
        return None;
    }
    let image = Tensor::<2, Bool>::from_data(TensorData::new(mask.to_vec(), [h, w]), &device);
    let labels: Tensor<2, Int> = image.connected_components(Connectivity::Eight);
    labels
        .into_data()
        .convert::<i64>()
        .try_into_vec::<i64>()
        .ok()
}

/// Without a burn-vision backend feature, components always take the host path.
#[cfg(not(any(feature = "flex", feature = "wgpu")))]
fn vision_components(_: &[bool], _: [usize; 2], _: &Device) -> Option<Vec<i64>> {
    None
}

/// 8-connected components on the host (union–find over a raster scan).
fn host_components(mask: &[bool], [w, h]: [usize; 2]) -> Vec<i64> {
    let mut parent: Vec<usize> = (0..w * h).collect();
    fn root(parent: &mut [usize], mut i: usize) -> usize {
        while parent[i] != i {
            parent[i] = parent[parent[i]];
            i = parent[i];
        }
        i
    }
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            if !mask[i] {
                continue;
            }
            // Neighbours already visited: left, up-left, up, up-right.
            let mut neighbours = Vec::with_capacity(4);
            if x > 0 {
                neighbours.push(i - 1);
            }
            if y > 0 {
                if x > 0 {
                    neighbours.push(i - w - 1);
                }
                neighbours.push(i - w);
                if x + 1 < w {
                    neighbours.push(i - w + 1);
                }
            }
            for n in neighbours.into_iter().filter(|&n| mask[n]) {
                let (a, b) = (root(&mut parent, i), root(&mut parent, n));
                if a != b {
                    parent[a.max(b)] = a.min(b);
                }
            }
        }
    }
    (0..w * h)
        .map(|i| {
            if mask[i] {
                root(&mut parent, i) as i64 + 1
            } else {
                0
            }
        })
        .collect()
}

/// Component labels of a row-major `width × height` mask: 0 off the mask, and `1..=n` in the
/// order components are first met in a raster scan.
pub fn label_components(mask: &[bool], size: [usize; 2], device: &Device) -> Vec<u32> {
    let raw = vision_components(mask, size, device).unwrap_or_else(|| host_components(mask, size));
    let mut renumbered = std::collections::HashMap::new();
    raw.iter()
        .zip(mask)
        .map(|(&label, &on)| {
            if !on {
                return 0;
            }
            let next = renumbered.len() as u32 + 1;
            *renumbered.entry(label).or_insert(next)
        })
        .collect()
}

/// The instances of a label map (`labels`, one class id a pixel, row-major `width × height`):
/// for each `(label id, class index)` of `classes`, the 8-connected components of its pixels
/// with at least `min_area` pixels, as `(class index, mask)`, in class order then raster order.
pub fn instances_from_labels(
    labels: &[u8],
    [width, height]: [usize; 2],
    classes: &[(u8, usize)],
    min_area: u64,
    device: &Device,
) -> Vec<(usize, Rle)> {
    let mut instances = Vec::new();
    for &(id, class) in classes {
        let mask: Vec<bool> = labels.iter().map(|&v| v == id).collect();
        if !mask.contains(&true) {
            continue;
        }
        let components = label_components(&mask, [width, height], device);
        let count = components.iter().copied().max().unwrap_or(0);
        for c in 1..=count {
            let pixels: Vec<u8> = components.iter().map(|&l| u8::from(l == c)).collect();
            let rle = Rle::from_bitmap(&pixels, height as u32, width as u32);
            if rle.area() >= min_area {
                instances.push((class, rle));
            }
        }
    }
    instances
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 6×4 map of class 1 blobs: one touching diagonally (one component with 8-connectivity),
    /// one apart, and a single pixel of class 2.
    fn labels() -> Vec<u8> {
        #[rustfmt::skip]
        let map = vec![
            1, 1, 0, 0, 0, 1,
            1, 0, 0, 0, 0, 1,
            0, 1, 0, 2, 0, 0,
            0, 0, 0, 0, 0, 0,
        ];
        map
    }

    #[test]
    fn diagonal_neighbours_join_and_apart_blobs_do_not() {
        let mask: Vec<bool> = labels().iter().map(|&v| v == 1).collect();
        let host = host_components(&mask, [6, 4]);
        assert_eq!(
            host[0],
            host[7 + 6],
            "diagonal pixels (0,1) and (1,2) are one component"
        );
        assert_ne!(host[0], host[5]);
        // burn-vision's labels (Flex builds) or the host's, renumbered in raster order.
        let l = label_components(&mask, [6, 4], &Device::default());
        assert_eq!(&l[..6], [1, 1, 0, 0, 0, 2]);
        assert_eq!(l[13], 1);
        assert_eq!(l[11], 2);
    }

    #[test]
    fn instances_are_per_class_and_small_ones_dropped() {
        let device = Device::default();
        let found = instances_from_labels(&labels(), [6, 4], &[(1, 0), (2, 1)], 1, &device);
        let summary: Vec<(usize, u64)> = found.iter().map(|(c, m)| (*c, m.area())).collect();
        assert_eq!(summary, vec![(0, 4), (0, 2), (1, 1)]);
        let found = instances_from_labels(&labels(), [6, 4], &[(1, 0), (2, 1)], 3, &device);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].1.bbox().x2, 2.0);
    }
}

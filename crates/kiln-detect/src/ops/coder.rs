//! R-CNN's box coding: a box relative to a reference box (an anchor or a proposal) as centre
//! offsets in units of the reference's size and log size ratios, each multiplied by a weight.

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

/// The largest log size ratio [`BoxCoder::decode`] lets through, `ln(1000 / 16)` as in
/// torchvision and Detectron: a decoded box is at most 62.5 times its reference's size.
pub const DEFAULT_DELTA_CLAMP: f32 = 4.135_166_6;

/// Encodes boxes as deltas `(dx, dy, dw, dh)` from reference boxes and decodes them back
/// (torchvision's `BoxCoder`):
/// `dx = wx (cx - cx_ref) / w_ref`, `dw = ww ln(w / w_ref)`, and alike for y and h.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct BoxCoder {
    /// `(wx, wy, ww, wh)`: (10, 10, 5, 5) for Fast/Faster R-CNN's box head, (1, 1, 1, 1) for
    /// the RPN and for R-CNN's ridge regressor.
    pub weights: [f32; 4],
    /// Log size ratios above this are clamped when decoding.
    pub delta_clamp: f32,
}

impl Default for BoxCoder {
    fn default() -> Self {
        Self::new([1.0; 4])
    }
}

/// Centres and sizes `[N]` of `[N, 4]` boxes.
fn centre_size(boxes: Tensor<2>) -> [Tensor<1>; 4] {
    let n = boxes.dims()[0];
    let mut cols = boxes.split(1, 1).into_iter().map(|c| c.reshape([n]));
    let mut next = || cols.next().expect("four columns");
    let (x1, y1, x2, y2) = (next(), next(), next(), next());
    let w = x2 - x1.clone();
    let h = y2 - y1.clone();
    [
        x1 + w.clone().mul_scalar(0.5),
        y1 + h.clone().mul_scalar(0.5),
        w,
        h,
    ]
}

impl BoxCoder {
    /// A coder with these weights and the default clamp.
    pub fn new(weights: [f32; 4]) -> Self {
        Self {
            weights,
            delta_clamp: DEFAULT_DELTA_CLAMP,
        }
    }

    /// Deltas `[N, 4]` that take `reference[i]` to `boxes[i]` (both `[N, 4]`, positive sizes).
    pub fn encode(&self, boxes: Tensor<2>, reference: Tensor<2>) -> Tensor<2> {
        let [wx, wy, ww, wh] = self.weights;
        let [rcx, rcy, rw, rh] = centre_size(reference);
        let [cx, cy, w, h] = centre_size(boxes);
        let n = cx.dims()[0];
        let dx = (cx - rcx).div(rw.clone()).mul_scalar(wx);
        let dy = (cy - rcy).div(rh.clone()).mul_scalar(wy);
        let dw = w.div(rw).log().mul_scalar(ww);
        let dh = h.div(rh).log().mul_scalar(wh);
        Tensor::stack::<2>(vec![dx, dy, dw, dh], 1).reshape([n, 4])
    }

    /// Boxes `[N, 4]` that `deltas[i]` make of `reference[i]`; log size ratios are clamped at
    /// [`BoxCoder::delta_clamp`] so a wild prediction cannot overflow.
    pub fn decode(&self, deltas: Tensor<2>, reference: Tensor<2>) -> Tensor<2> {
        let [wx, wy, ww, wh] = self.weights;
        let [rcx, rcy, rw, rh] = centre_size(reference);
        let n = rcx.dims()[0];
        let mut cols = deltas.split(1, 1).into_iter().map(|c| c.reshape([n]));
        let mut next = || cols.next().expect("four columns");
        let (dx, dy, dw, dh) = (next(), next(), next(), next());
        let cx = dx.div_scalar(wx).mul(rw.clone()) + rcx;
        let cy = dy.div_scalar(wy).mul(rh.clone()) + rcy;
        let w = dw.div_scalar(ww).clamp_max(self.delta_clamp).exp().mul(rw);
        let h = dh.div_scalar(wh).clamp_max(self.delta_clamp).exp().mul(rh);
        let (half_w, half_h) = (w.mul_scalar(0.5), h.mul_scalar(0.5));
        Tensor::stack::<2>(
            vec![
                cx.clone() - half_w.clone(),
                cy.clone() - half_h.clone(),
                cx + half_w,
                cy + half_h,
            ],
            1,
        )
        .reshape([n, 4])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData, Tolerance};

    fn t(rows: &[[f32; 4]]) -> Tensor<2> {
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        Tensor::from_data(TensorData::new(flat, [rows.len(), 4]), &Device::flex())
    }

    #[test]
    fn encodes_hand_computed_deltas_and_decodes_back() {
        // Reference: centre (5, 5), 10×10. Box: centre (7, 4), 20×5.
        // dx = 10 · 2/10 = 2, dy = 10 · (-1)/10 = -1, dw = 5 ln 2, dh = 5 ln 0.5.
        let coder = BoxCoder::new([10.0, 10.0, 5.0, 5.0]);
        let reference = t(&[[0.0, 0.0, 10.0, 10.0]]);
        let boxes = t(&[[-3.0, 1.5, 17.0, 6.5]]);
        let deltas = coder.encode(boxes.clone(), reference.clone());
        let ln2 = std::f32::consts::LN_2;
        deltas.clone().into_data().assert_approx_eq::<f32>(
            &TensorData::new(vec![2.0, -1.0, 5.0 * ln2, -5.0 * ln2], [1, 4]),
            Tolerance::absolute(1e-5),
        );
        coder
            .decode(deltas, reference)
            .into_data()
            .assert_approx_eq::<f32>(&boxes.into_data(), Tolerance::absolute(1e-4));
    }

    #[test]
    fn decoding_clamps_huge_size_deltas() {
        let coder = BoxCoder::default();
        let reference = t(&[[0.0, 0.0, 16.0, 16.0]]);
        let decoded = coder.decode(t(&[[0.0, 0.0, 50.0, 50.0]]), reference);
        // exp(ln(1000/16)) · 16 = 1000 wide, centred on 8.
        decoded.into_data().assert_approx_eq::<f32>(
            &TensorData::new(vec![-492.0, -492.0, 508.0, 508.0], [1, 4]),
            Tolerance::absolute(1e-2),
        );
    }
}

//! Max pooling on Burn's Flex CPU backend as a custom autodiff operation: [`kernels::forward`]
//! keeps only the `u32` positions of the maxima for the backward pass, not the input.

use std::sync::Arc;

use burn::tensor::{DType, Tensor};
use burn_autodiff::Autodiff;
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};
use burn_flex::{Flex, FlexTensor};

use super::kernels::{self, PoolGeometry};
use crate::flex_slices::{contiguous, tensor, values};

type Ad = Autodiff<Flex>;

/// The pool through kiln's kernels when `x` lives on Flex (with or without autodiff) as `f32`
/// and the geometry is one they take; `None` otherwise.
pub(super) fn max_pool2d(x: &Tensor<4>, window: Window) -> Option<Tensor<4>> {
    if x.dtype() != DType::F32 {
        return None;
    }
    let g = window.geometry(x.dims())?;
    if let Ok(x) = x.clone().try_into_primitive::<Ad>() {
        let input = contiguous(x.primitive().clone());
        let output = match MaxPoolBackward
            .prepare::<NoCheckpointing>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (out, positions) = kernels::forward(&g, values(&input), true);
                prep.finish((g, Arc::new(positions)), pooled(&g, out))
            }
            OpsKind::UnTracked(prep) => {
                let (out, _) = kernels::forward(&g, values(&input), false);
                prep.finish(pooled(&g, out))
            }
        };
        return Some(Tensor::from_primitive::<Ad>(output));
    }
    let x = contiguous(x.clone().try_into_primitive::<Flex>().ok()?);
    let (out, _) = kernels::forward(&g, values(&x), false);
    Some(Tensor::from_primitive::<Flex>(pooled(&g, out)))
}

/// A pool's window, stride, symmetric padding and dilation.
#[derive(Debug, Clone, Copy)]
pub(super) struct Window {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
}

impl Window {
    fn geometry(&self, input: [usize; 4]) -> Option<PoolGeometry> {
        PoolGeometry::new(input, self.kernel, self.stride, self.padding, self.dilation)
    }
}

/// The pooled values as an `[n, c, oh, ow]` tensor.
fn pooled(g: &PoolGeometry, values: Vec<f32>) -> FlexTensor {
    let [oh, ow] = g.output;
    tensor(values, [g.batch, g.channels, oh, ow])
}

/// The backward pass; its state is the geometry and the maxima's positions.
#[derive(Debug)]
struct MaxPoolBackward;

impl Backward<Flex, 1> for MaxPoolBackward {
    type State = (PoolGeometry, Arc<Vec<u32>>);

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let dy = contiguous(grads.consume::<Flex>(&ops.node));
        let [Some(node)] = ops.parents else {
            return;
        };
        let (g, positions) = ops.state;
        let dx = kernels::backward(&g, &positions, values(&dy));
        let [h, w] = g.input;
        grads.register::<Flex>(node.id, tensor(dx, [g.batch, g.channels, h, w]));
    }
}

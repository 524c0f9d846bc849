//! ReLU6 on Burn's Flex CPU backend as a custom autodiff operation: one clamp pass forward, one
//! masked pass backward.

use burn::backend::TensorMetadata;
use burn::tensor::{DType, Tensor};
use burn_autodiff::Autodiff;
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};
use burn_flex::{Flex, FlexTensor};
use rayon::prelude::*;

use crate::flex_slices::{contiguous, tensor, values};

type Ad = Autodiff<Flex>;

/// Elements per parallel chunk: small tensors stay on one thread.
const CHUNK: usize = 1 << 15;

/// ReLU6 through kiln's kernels when `x` lives on Flex (with or without autodiff) as `f32`;
/// `None` otherwise.
pub(super) fn relu6<const D: usize>(x: &Tensor<D>) -> Option<Tensor<D>> {
    if x.dtype() != DType::F32 {
        return None;
    }
    if let Ok(x) = x.clone().try_into_primitive::<Ad>() {
        let input = contiguous(x.primitive().clone());
        let output = clamped(&input);
        let output = match Relu6Backward
            .prepare::<NoCheckpointing>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let input = prep.checkpoint(&x);
                prep.finish(input, output)
            }
            OpsKind::UnTracked(prep) => prep.finish(output),
        };
        return Some(Tensor::from_primitive::<Ad>(output));
    }
    let x = x.clone().try_into_primitive::<Flex>().ok()?;
    Some(Tensor::from_primitive::<Flex>(clamped(&contiguous(x))))
}

/// `min(max(x, 0), 6)` of a contiguous tensor, as a tensor of its shape.
fn clamped(x: &FlexTensor) -> FlexTensor {
    let input = values(x);
    let mut out = vec![0.0f32; input.len()];
    out.par_chunks_mut(CHUNK)
        .zip(input.par_chunks(CHUNK))
        .for_each(|(out, input)| {
            for (o, &v) in out.iter_mut().zip(input) {
                *o = v.clamp(0.0, 6.0);
            }
        });
    tensor(out, x.shape().to_vec())
}

/// `dy` where `0 < x < 6`, zero elsewhere (PyTorch's `hardtanh_backward`).
fn masked_gradient(x: &[f32], dy: &[f32]) -> Vec<f32> {
    let mut dx = vec![0.0f32; x.len()];
    dx.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK).zip(dy.par_chunks(CHUNK)))
        .for_each(|(dx, (x, dy))| {
            for ((d, &v), &g) in dx.iter_mut().zip(x).zip(dy) {
                *d = if v > 0.0 && v < 6.0 { g } else { 0.0 };
            }
        });
    dx
}

/// The backward pass (one parent, the input, whose checkpoint is the state).
#[derive(Debug)]
struct Relu6Backward;

impl Backward<Flex, 1> for Relu6Backward {
    type State = burn_autodiff::NodeId;

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let dy = contiguous(grads.consume::<Flex>(&ops.node));
        let [Some(node)] = ops.parents else {
            return;
        };
        let x = contiguous(checkpointer.retrieve_node_output::<FlexTensor>(ops.state));
        let dx = masked_gradient(values(&x), values(&dy));
        grads.register::<Flex>(node.id, tensor(dx, x.shape().to_vec()));
    }
}

//! [`kernels`] on Burn's Flex CPU backend as custom autodiff operations: training batch
//! normalisation (parents: input, γ, β) and the per-channel affine map of inference batch
//! normalisation (parents: input, scale, shift).

use burn::backend::TensorMetadata;
use burn::backend::tensor::FloatTensor;
use burn::backend::{AutodiffBackend, Backend, DispatchKindConversion, DispatchTensor};
use burn::tensor::{DType, Tensor};
use burn_autodiff::Autodiff;
use burn_autodiff::NodeId;
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, Ops, OpsKind};
use burn_flex::{Flex, FlexTensor};

use super::kernels::{self, BatchStatistics, ChannelLayout, FusedActivation, TrainState};
use crate::flex_slices::{contiguous, tensor, values};

type Ad = Autodiff<Flex>;

/// Output and batch statistics of a training normalisation.
pub(super) struct Trained<const D: usize> {
    pub output: Tensor<D>,
    pub mean: Tensor<1>,
    pub variance: Tensor<1>,
}

/// Training batch normalisation, then `activation`, through kiln's kernels when the tensors live
/// on autodiff Flex as `f32`; `None` otherwise.
pub(super) fn batch_norm_train<const D: usize>(
    x: &Tensor<D>,
    gamma: &Tensor<1>,
    beta: &Tensor<1>,
    epsilon: f64,
    activation: FusedActivation,
) -> Option<Trained<D>> {
    let [x, gamma, beta] = primitives::<Ad, D>(x, gamma, beta)?;
    let layout = layout(x.primitive())?;
    let input = contiguous(x.primitive().clone());
    let gamma_values = contiguous(gamma.primitive().clone());
    let beta_values = contiguous(beta.primitive().clone());
    let (mean, variance) = kernels::statistics(&layout, values(&input));
    let inv_std: Vec<f32> = variance
        .iter()
        .map(|&v| (1.0 / (v as f64 + epsilon).sqrt()) as f32)
        .collect();
    let gamma_values = values(&gamma_values).to_vec();
    let scale: Vec<f32> = gamma_values
        .iter()
        .zip(&inv_std)
        .map(|(g, i)| g * i)
        .collect();
    let shift: Vec<f32> = values(&beta_values)
        .iter()
        .zip(&scale)
        .zip(&mean)
        .map(|((b, s), m)| b - s * m)
        .collect();
    let output = affine(&input, &layout, &scale, &shift, activation);
    let state = TrainState {
        gamma: gamma_values,
        stats: BatchStatistics {
            mean: mean.clone(),
            inv_std,
        },
        scale,
        shift,
        activation,
    };
    let channels = layout.channels;
    let output = record(
        [&x, &gamma, &beta],
        |x| NormState::Train { x, layout, state },
        output,
    );
    let statistic = |v: Vec<f32>| {
        Tensor::from_primitive::<Ad>(<Ad as AutodiffBackend>::from_inner(tensor(
            v,
            vec![channels],
        )))
    };
    Some(Trained {
        output: Tensor::from_primitive::<Ad>(output),
        mean: statistic(mean),
        variance: statistic(variance),
    })
}

/// `activation(x · scale[c] + shift[c])` through kiln's kernels when the tensors live on Flex
/// (with or without autodiff) as `f32`; `None` otherwise.
pub(super) fn channel_affine<const D: usize>(
    x: &Tensor<D>,
    scale: &Tensor<1>,
    shift: &Tensor<1>,
    activation: FusedActivation,
) -> Option<Tensor<D>> {
    if let Some([x, scale, shift]) = primitives::<Ad, D>(x, scale, shift) {
        let layout = layout(x.primitive())?;
        let input = contiguous(x.primitive().clone());
        let scale_values = values(&contiguous(scale.primitive().clone())).to_vec();
        let shift_values = values(&contiguous(shift.primitive().clone())).to_vec();
        let output = affine(&input, &layout, &scale_values, &shift_values, activation);
        let output = record(
            [&x, &scale, &shift],
            |x| NormState::Affine {
                x,
                layout,
                scale: scale_values,
                shift: shift_values,
                activation,
            },
            output,
        );
        return Some(Tensor::from_primitive::<Ad>(output));
    }
    let [x, scale, shift] = primitives::<Flex, D>(x, scale, shift)?;
    let layout = layout(&x)?;
    let (x, scale, shift) = (contiguous(x), contiguous(scale), contiguous(shift));
    let output = affine(&x, &layout, values(&scale), values(&shift), activation);
    Some(Tensor::from_primitive::<Flex>(output))
}

/// [`kernels::affine`] of a contiguous input, as a tensor of the input's shape.
fn affine(
    x: &FlexTensor,
    layout: &ChannelLayout,
    scale: &[f32],
    shift: &[f32],
    activation: FusedActivation,
) -> FlexTensor {
    tensor(
        kernels::affine(layout, values(x), scale, shift, activation),
        x.shape().to_vec(),
    )
}

/// `output` as a [`NormBackward`] node whose parents are `x` and the two per-channel tensors;
/// when a gradient is wanted, `state` receives the input's checkpoint.
fn record(
    [x, first, second]: [&FloatTensor<Ad>; 3],
    state: impl FnOnce(NodeId) -> NormState,
    output: FlexTensor,
) -> FloatTensor<Ad> {
    match NormBackward
        .prepare::<NoCheckpointing>([x.node(), first.node(), second.node()])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(mut prep) => {
            let input = prep.checkpoint(x);
            prep.finish(state(input), output)
        }
        OpsKind::UnTracked(prep) => prep.finish(output),
    }
}

/// The three tensors as backend `B`'s `f32` primitives, when all of them live on `B`.
fn primitives<B: Backend, const D: usize>(
    x: &Tensor<D>,
    a: &Tensor<1>,
    b: &Tensor<1>,
) -> Option<[FloatTensor<B>; 3]>
where
    DispatchTensor: DispatchKindConversion<B>,
{
    if [x.dtype(), a.dtype(), b.dtype()]
        .iter()
        .any(|d| *d != DType::F32)
    {
        return None;
    }
    Some([
        x.clone().try_into_primitive::<B>().ok()?,
        a.clone().try_into_primitive::<B>().ok()?,
        b.clone().try_into_primitive::<B>().ok()?,
    ])
}

/// What the backward pass needs: the input's node and the per-channel values the forward used.
#[derive(Clone, Debug)]
enum NormState {
    /// Training normalisation with the batch's statistics.
    Train {
        x: NodeId,
        layout: ChannelLayout,
        state: TrainState,
    },
    /// The per-channel affine map.
    Affine {
        x: NodeId,
        layout: ChannelLayout,
        scale: Vec<f32>,
        shift: Vec<f32>,
        activation: FusedActivation,
    },
}

/// The backward pass of either operation (parents: input, then the two per-channel tensors).
#[derive(Debug)]
struct NormBackward;

impl Backward<Flex, 3> for NormBackward {
    type State = NormState;

    fn backward(
        self,
        ops: Ops<Self::State, 3>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let dy = contiguous(grads.consume::<Flex>(&ops.node));
        let [x_node, first, second] = ops.parents;
        let want_x = x_node.is_some();
        let (dx, d_first, d_second, shape) = match ops.state {
            NormState::Train { x, layout, state } => {
                let x = contiguous(checkpointer.retrieve_node_output::<FlexTensor>(x));
                let (dx, dgamma, dbeta) =
                    kernels::train_backward(&layout, values(&x), values(&dy), &state, want_x);
                (dx, dgamma, dbeta, x.shape().to_vec())
            }
            NormState::Affine {
                x,
                layout,
                scale,
                shift,
                activation,
            } => {
                let x = contiguous(checkpointer.retrieve_node_output::<FlexTensor>(x));
                let (dx, dscale, dshift) = kernels::affine_backward(
                    &layout,
                    values(&x),
                    values(&dy),
                    [&scale, &shift],
                    activation,
                    want_x,
                );
                (dx, dscale, dshift, x.shape().to_vec())
            }
        };
        let channels = d_first.len();
        if let (Some(node), Some(dx)) = (x_node, dx) {
            grads.register::<Flex>(node.id, tensor(dx, shape));
        }
        if let Some(node) = first {
            grads.register::<Flex>(node.id, tensor(d_first, vec![channels]));
        }
        if let Some(node) = second {
            grads.register::<Flex>(node.id, tensor(d_second, vec![channels]));
        }
    }
}

fn layout(x: &FlexTensor) -> Option<ChannelLayout> {
    ChannelLayout::of(&x.shape().to_vec())
}

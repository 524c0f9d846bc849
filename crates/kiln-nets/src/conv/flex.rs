//! kiln's kernels on Burn's Flex CPU backend: a custom autodiff operation whose forward and
//! backward passes are [`dense`] / [`depthwise`] (Flex's kernels for other group counts).

use burn::backend::ops::ModuleOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, DispatchKindConversion, DispatchTensor, TensorMetadata};
use burn::tensor::{DType, Tensor, ops::ConvOptions};
use burn_autodiff::Autodiff;
use burn_autodiff::NodeId;
use burn_autodiff::checkpoint::base::Checkpointer;
use burn_autodiff::checkpoint::strategy::NoCheckpointing;
use burn_autodiff::grads::Gradients;
use burn_autodiff::ops::{Backward, NodeGuard, Ops, OpsKind};
use burn_flex::{Flex, FlexTensor};

use super::geometry::ConvGeometry;
use super::{dense, depthwise};
use crate::flex_slices::{contiguous, tensor, values};

type Ad = Autodiff<Flex>;

/// The convolution through kiln's kernels when every tensor lives on Flex (with or without
/// autodiff) as `f32`; `None` otherwise.
pub(super) fn conv2d(
    x: &Tensor<4>,
    weight: &Tensor<4>,
    bias: Option<&Tensor<1>>,
    options: &ConvOptions<2>,
) -> Option<Tensor<4>> {
    if x.dtype() != DType::F32 || weight.dtype() != DType::F32 {
        return None;
    }
    if let Some((x, weight, bias)) = primitives::<Ad>(x, weight, bias) {
        return Some(Tensor::from_primitive::<Ad>(tracked(
            x, weight, bias, options,
        )));
    }
    let (x, weight, bias) = primitives::<Flex>(x, weight, bias)?;
    Some(Tensor::from_primitive::<Flex>(forward(
        x, weight, bias, options,
    )))
}

/// Input, weight and bias as backend `B`'s primitives.
type Primitives<B> = (FloatTensor<B>, FloatTensor<B>, Option<FloatTensor<B>>);

/// The backend `B`'s primitives of the input, weight and bias, when all of them live on `B`.
fn primitives<B: Backend>(
    x: &Tensor<4>,
    weight: &Tensor<4>,
    bias: Option<&Tensor<1>>,
) -> Option<Primitives<B>>
where
    DispatchTensor: DispatchKindConversion<B>,
{
    let x = x.clone().try_into_primitive::<B>().ok()?;
    let weight = weight.clone().try_into_primitive::<B>().ok()?;
    let bias = match bias {
        Some(b) => Some(b.clone().try_into_primitive::<B>().ok()?),
        None => None,
    };
    Some((x, weight, bias))
}

/// The forward pass on Flex: kiln's kernels for depthwise and ungrouped convolutions, Flex's
/// for other group counts and for 1×1 layers (Flex multiplies those straight from the image,
/// as [`dense::forward`] would, and measured faster on EfficientNet-Lite0's inference).
fn forward(
    x: FlexTensor,
    weight: FlexTensor,
    bias: Option<FlexTensor>,
    options: &ConvOptions<2>,
) -> FlexTensor {
    let Some(g) = geometry(&x, &weight, options)
        .filter(|g| (g.groups == 1 && !g.is_pointwise()) || g.is_depthwise())
    else {
        return Flex::conv2d(x, weight, bias, options.clone());
    };
    let kernel = if g.is_depthwise() {
        depthwise::forward
    } else {
        dense::forward
    };
    let (x, weight) = (contiguous(x), contiguous(weight));
    let bias = bias.map(contiguous);
    let out = kernel(&g, values(&x), values(&weight), bias.as_ref().map(values));
    let [oh, ow] = g.output;
    tensor(out, [g.batch, g.out_channels, oh, ow])
}

/// Records the convolution on the autodiff graph with [`ConvBackward`].
fn tracked(
    x: FloatTensor<Ad>,
    weight: FloatTensor<Ad>,
    bias: Option<FloatTensor<Ad>>,
    options: &ConvOptions<2>,
) -> FloatTensor<Ad> {
    let bias_primitive = bias.as_ref().map(|b| b.primitive().clone());
    let output = || {
        forward(
            x.primitive().clone(),
            weight.primitive().clone(),
            bias_primitive,
            options,
        )
    };
    match &bias {
        Some(bias) => record(
            ConvBackward::<3>,
            [x.node(), weight.node(), bias.node()],
            [&x, &weight],
            options,
            output,
        ),
        None => record(
            ConvBackward::<2>,
            [x.node(), weight.node()],
            [&x, &weight],
            options,
            output,
        ),
    }
}

/// The output of `output()` as a node whose parents are `nodes`, keeping the input and the
/// weight for the backward pass when a gradient is wanted.
fn record<const N: usize>(
    op: ConvBackward<N>,
    nodes: [NodeGuard; N],
    [x, weight]: [&FloatTensor<Ad>; 2],
    options: &ConvOptions<2>,
    output: impl FnOnce() -> FlexTensor,
) -> FloatTensor<Ad> {
    match op
        .prepare::<NoCheckpointing>(nodes)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(mut prep) => {
            let state = (prep.checkpoint(x), prep.checkpoint(weight), options.clone());
            prep.finish(state, output())
        }
        OpsKind::UnTracked(prep) => prep.finish(output()),
    }
}

/// The backward pass of a convolution with (`N = 3`) or without (`N = 2`) a bias.
#[derive(Debug)]
struct ConvBackward<const N: usize>;

impl<const N: usize> Backward<Flex, N> for ConvBackward<N> {
    type State = (NodeId, NodeId, ConvOptions<2>);

    fn backward(
        self,
        ops: Ops<Self::State, N>,
        grads: &mut Gradients,
        checkpointer: &mut Checkpointer,
    ) {
        let grad = grads.consume::<Flex>(&ops.node);
        let (x_id, weight_id, options) = ops.state;
        let x: FlexTensor = checkpointer.retrieve_node_output(x_id);
        let weight: FlexTensor = checkpointer.retrieve_node_output(weight_id);
        let parents = &ops.parents;
        let bias_node = parents.get(2).and_then(Option::as_ref);
        let g = geometry(&x, &weight, &options).filter(|g| g.groups == 1 || g.is_depthwise());
        let Some(g) = g else {
            // Other group counts keep Burn's generic gradients.
            if let Some(node) = &parents[0] {
                let dx = Flex::conv2d_x_backward(
                    x.clone(),
                    weight.clone(),
                    grad.clone(),
                    options.clone(),
                );
                grads.register::<Flex>(node.id, dx);
            }
            if let Some(node) = &parents[1] {
                let dw =
                    Flex::conv2d_weight_backward(x.clone(), weight.clone(), grad.clone(), options);
                grads.register::<Flex>(node.id, dw);
            }
            if let Some(node) = bias_node {
                let [o, ..]: [usize; 4] = weight.shape().dims();
                let db =
                    Flex::conv2d_bias_backward(x, FlexTensor::zeros([o].into(), DType::F32), grad);
                grads.register::<Flex>(node.id, db);
            }
            return;
        };
        let (x, weight, grad) = (contiguous(x), contiguous(weight), contiguous(grad));
        if let Some(node) = &parents[0] {
            let dx = if g.is_depthwise() {
                depthwise::input_grad(&g, values(&weight), values(&grad))
            } else {
                dense::input_grad(&g, values(&weight), values(&grad))
            };
            let [h, w] = g.input;
            grads.register::<Flex>(node.id, tensor(dx, [g.batch, g.in_channels, h, w]));
        }
        if parents[1].is_some() || bias_node.is_some() {
            let (dw, db) = if g.is_depthwise() {
                depthwise::weight_grad(&g, values(&x), values(&grad))
            } else {
                dense::weight_grad(&g, values(&x), values(&grad))
            };
            if let Some(node) = &parents[1] {
                grads.register::<Flex>(node.id, tensor(dw, weight.shape().dims::<4>()));
            }
            if let Some(node) = bias_node {
                grads.register::<Flex>(node.id, tensor(db, [g.out_channels]));
            }
        }
    }
}

fn geometry(x: &FlexTensor, weight: &FlexTensor, options: &ConvOptions<2>) -> Option<ConvGeometry> {
    if x.dtype() != DType::F32 || weight.dtype() != DType::F32 {
        return None;
    }
    ConvGeometry::new(x.shape().dims(), weight.shape().dims(), options)
}

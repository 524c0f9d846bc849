//! Mixed precision for kiln's layers, as PyTorch's `torch.autocast` does it: inside [`scope`],
//! every kiln layer computes in a half float type while its weights stay in their own (f32)
//! type.
//!
//! - Convolutions ([`crate::conv`]) and linear layers ([`crate::linear`]) cast their input to
//!   the scope's type and their weights to the input's. The cast is an autodiff operation, so
//!   a weight's gradient arrives in the weight's own type: the optimizer updates f32 master
//!   weights and keeps f32 state.
//! - Batch norms ([`crate::norm`]) compute in their parameters' type (f32, with f32 running
//!   statistics) and hand back the input's type, as cuDNN's batch norm does for half inputs:
//!   batch statistics in half lose too many digits.
//! - Everything else (activations, pooling, additions) follows its input.
//!
//! Outside a scope nothing is cast: a layer whose input and weights share a type computes in
//! it, as before. The scope is per thread (the thread that runs the forward pass), so tests
//! and data-loader threads do not see each other's. A task that computes a loss from a
//! network's output casts it back first ([`to_device_float`]): half logits overflow in a
//! softmax.

use std::cell::Cell;

use burn::tensor::{DType, FloatDType, Tensor};

thread_local! {
    static COMPUTE: Cell<Option<FloatDType>> = const { Cell::new(None) };
}

/// Runs `f` with kiln's layers computing in `dtype` on this thread (see the module docs);
/// the previous setting is restored afterwards, also when `f` panics.
pub fn scope<R>(dtype: FloatDType, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<FloatDType>);
    impl Drop for Restore {
        fn drop(&mut self) {
            COMPUTE.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(COMPUTE.with(|c| c.replace(Some(dtype))));
    f()
}

/// The float type kiln's layers compute in on this thread: `Some` inside a [`scope`].
pub fn compute_dtype() -> Option<FloatDType> {
    COMPUTE.with(Cell::get)
}

/// `x` in the scope's float type (unchanged outside a scope, or when it already is).
pub fn input<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    match compute_dtype() {
        Some(dtype) => cast(x, dtype),
        None => x,
    }
}

/// `weight` in the float type of `x` (a differentiable cast: the gradient comes back in the
/// weight's type); unchanged when the types agree.
pub fn like<const D: usize, const E: usize>(weight: Tensor<D>, x: &Tensor<E>) -> Tensor<D> {
    cast(weight, FloatDType::from(x.dtype()))
}

/// A layer's input, weight and bias as it computes with them: `x` through [`input`], the
/// weight and bias [`like`] it.
pub fn layer<const D: usize, const W: usize>(
    x: Tensor<D>,
    weight: Tensor<W>,
    bias: Option<Tensor<1>>,
) -> (Tensor<D>, Tensor<W>, Option<Tensor<1>>) {
    let x = input(x);
    let weight = like(weight, &x);
    let bias = bias.map(|b| like(b, &x));
    (x, weight, bias)
}

/// `x` in its device's float type (f32 unless the device was configured for half): the type
/// a loss computes in. Unchanged when it already is.
pub fn to_device_float<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let wanted = x.device().settings().float_dtype;
    cast(x, wanted)
}

/// `x` cast to `dtype`, or `x` itself when it has that type already (no autodiff node).
pub fn cast<const D: usize>(x: Tensor<D>, dtype: FloatDType) -> Tensor<D> {
    if x.dtype() == DType::from(dtype) {
        x
    } else {
        x.cast(dtype)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    #[test]
    fn the_scope_sets_the_compute_type_and_restores_it() {
        assert_eq!(compute_dtype(), None);
        let inner = scope(FloatDType::F16, || {
            let nested = scope(FloatDType::BF16, compute_dtype);
            (compute_dtype(), nested)
        });
        assert_eq!(inner, (Some(FloatDType::F16), Some(FloatDType::BF16)));
        assert_eq!(compute_dtype(), None);
        let panicked = std::panic::catch_unwind(|| scope(FloatDType::F16, || panic!("inside")));
        assert!(panicked.is_err());
        assert_eq!(compute_dtype(), None, "restored after a panic");
    }

    #[test]
    fn casts_follow_the_scope_and_gradients_return_in_the_weights_type() {
        let device = Device::flex().autodiff();
        let x = Tensor::<2>::from_data(
            TensorData::new(vec![1.0f32, 2.0, 3.0, 4.0], [2, 2]),
            &device,
        );
        assert_eq!(input(x.clone()).dtype(), DType::F32, "no scope: unchanged");
        let weight = Tensor::<2>::from_data(
            TensorData::new(vec![0.5f32, -1.0, 2.0, 0.25], [2, 2]),
            &device,
        )
        .require_grad();
        let half = scope(FloatDType::F16, || input(x.clone()));
        assert_eq!(half.dtype(), DType::F16);
        let w = like(weight.clone(), &half);
        assert_eq!(w.dtype(), DType::F16);
        let y = half.matmul(w);
        let loss = to_device_float(y).sum();
        assert_eq!(loss.dtype(), DType::F32);
        let grads = loss.backward();
        let grad = weight.grad(&grads).expect("the f32 weight gets a gradient");
        assert_eq!(grad.dtype(), DType::F32);
        // d(sum(x·w))/dw[k][j] = Σ_i x[i][k]: column sums of x, exact in half.
        assert_eq!(
            grad.into_data().try_to_vec::<f32>().unwrap(),
            vec![4.0, 4.0, 6.0, 6.0]
        );
    }
}

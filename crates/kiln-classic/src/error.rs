//! Errors of `kiln-classic`.

/// Invalid inputs and failed trainings.
#[derive(Debug, thiserror::Error)]
pub enum ClassicError {
    /// Inputs whose shapes or sizes do not fit together.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// An argument out of its valid range.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// The argument.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// Data containing NaN or infinity.
    #[error("{0} contains NaN or infinite values; check the input data")]
    NonFinite(&'static str),
    /// Training diverged.
    #[error(
        "training diverged at iteration {iteration}: loss is {loss}; lower the learning rate (was {learning_rate:e})"
    )]
    Diverged {
        /// Iteration at which the loss stopped being finite.
        iteration: usize,
        /// The loss seen.
        loss: f64,
        /// The learning rate used.
        learning_rate: f64,
    },
    /// Reading a tensor back from the device failed.
    #[error("reading a tensor from the device failed: {0}")]
    Read(String),
}

impl ClassicError {
    /// An invalid argument.
    pub fn invalid(what: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            what,
            reason: reason.into(),
        }
    }
}

/// Result alias for `kiln-classic`.
pub type Result<T, E = ClassicError> = std::result::Result<T, E>;

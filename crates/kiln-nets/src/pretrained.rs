//! Loading published PyTorch weights (`.pth` state dicts) into kiln modules.
//!
//! A weight file is a read-only input that must describe exactly the module it is loaded into:
//! every parameter and buffer of the module must be found with its shape, and every tensor of
//! the file must be used (apart from bookkeeping such as BatchNorm's `num_batches_tracked`).
//! Anything else is a [`PretrainedError::Mismatch`] that lists what did not match, so a file
//! of another architecture or a truncated checkpoint never loads half-way.
//!
//! Names are translated from PyTorch's to kiln's by [`KeyMap`] rules (regular expressions
//! applied in order); BatchNorm `weight`/`bias` become Burn's `gamma`/`beta` and linear
//! weights are transposed by burn-store's PyTorch adapter.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::store::{ApplyError, KeyRemapper, ModuleStore, PytorchStore, SafetensorsStore};
use burn::tensor::TensorData;

/// How many names of each kind a mismatch error lists before it summarises the rest.
const LISTED_NAMES: usize = 12;

/// Errors from loading pretrained weights.
#[derive(Debug, thiserror::Error)]
pub enum PretrainedError {
    /// The file could not be opened or parsed as a PyTorch state dict.
    #[error(
        "cannot read PyTorch weights {path}: {message}. Check that the file exists and is a \
         complete `.pth` state dict (re-download it if it was cut short)"
    )]
    Read {
        /// The weight file.
        path: PathBuf,
        /// What the reader reported.
        message: String,
    },
    /// The file's tensors do not describe the module.
    #[error(
        "{path} does not match {architecture}:\n{details}\nUse weights published for \
         {architecture} (a file for another architecture or variant cannot be loaded)"
    )]
    Mismatch {
        /// The weight file.
        path: PathBuf,
        /// What the weights were loaded into, e.g. `EfficientNet-Lite0`.
        architecture: String,
        /// Missing tensors, unused tensors and shape mismatches, one line each.
        details: String,
    },
    /// A key-mapping rule is not a valid regular expression (a bug in the caller).
    #[error("invalid key-mapping rule `{pattern}`: {message}")]
    Rule {
        /// The offending pattern.
        pattern: String,
        /// The regex error.
        message: String,
    },
}

/// Renaming rules from a file's tensor names to a module's parameter paths.
#[derive(Debug, Clone, Default)]
pub struct KeyMap {
    rules: Vec<(String, String)>,
    ignored: Vec<String>,
}

impl KeyMap {
    /// No renaming, nothing ignored.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a rule: tensor names matching the regex `from` are rewritten to `to`
    /// (`$1`… refer to capture groups). Rules apply in the order they were added.
    pub fn rename(mut self, from: &str, to: &str) -> Self {
        self.rules.push((from.to_string(), to.to_string()));
        self
    }

    /// Tensors of the file whose (original) names match the regex `pattern` are not needed
    /// by the module and are not reported as unused (e.g. `num_batches_tracked$`).
    pub fn ignore(mut self, pattern: &str) -> Self {
        self.ignored.push(pattern.to_string());
        self
    }

    /// Applies the rules to one name (what a tensor called `name` in the file is loaded as).
    pub fn map_name(&self, name: &str) -> Result<String, PretrainedError> {
        let mut mapped = name.to_string();
        for (from, to) in &self.rules {
            mapped = compile(from)?
                .replace_all(&mapped, to.as_str())
                .into_owned();
        }
        Ok(mapped)
    }

    fn is_ignored(&self, original: &str) -> Result<bool, PretrainedError> {
        for pattern in &self.ignored {
            if compile(pattern)?.is_match(original) {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

fn compile(pattern: &str) -> Result<regex::Regex, PretrainedError> {
    regex::Regex::new(pattern).map_err(|error| PretrainedError::Rule {
        pattern: pattern.to_string(),
        message: error.to_string(),
    })
}

/// The names of the tensors stored in a PyTorch state dict, as written in the file.
pub fn pytorch_tensor_names(path: &Path) -> Result<Vec<String>, PretrainedError> {
    let read_error = |message: String| PretrainedError::Read {
        path: path.to_path_buf(),
        message,
    };
    if !path.is_file() {
        return Err(read_error("no such file".into()));
    }
    let mut store = PytorchStore::from_file(path).map_indices_contiguous(false);
    store.keys().map_err(|error| read_error(error.to_string()))
}

/// Loads the PyTorch state dict at `path` into `module`, renaming tensors with `keys`.
///
/// Fails with [`PretrainedError::Mismatch`], listing every missing tensor, unused tensor and
/// shape mismatch, unless the file matches the module exactly; `architecture` names the module
/// in that message.
pub fn load_pytorch<M: Module>(
    module: M,
    path: &Path,
    keys: &KeyMap,
    architecture: &str,
) -> Result<M, PretrainedError> {
    let names = pytorch_tensor_names(path)?;
    let mut remapper = KeyRemapper::new();
    for (from, to) in &keys.rules {
        remapper = remapper
            .add_pattern(from, to)
            .map_err(|error| PretrainedError::Rule {
                pattern: from.clone(),
                message: error.to_string(),
            })?;
    }
    let mut store = PytorchStore::from_file(path)
        .map_indices_contiguous(false)
        .remap(remapper)
        .allow_partial(true)
        .validate(false);
    let mut module = module;
    let result = store
        .apply_to(&mut module)
        .map_err(|error| PretrainedError::Read {
            path: path.to_path_buf(),
            message: error.to_string(),
        })?;

    let mut ignored_targets = Vec::new();
    for name in &names {
        if keys.is_ignored(name)? {
            ignored_targets.push(keys.map_name(name)?);
        }
    }
    let mut details = Vec::new();
    let missing: Vec<&str> = result
        .missing
        .iter()
        .map(|(path, _)| path.as_str())
        .collect();
    list_names(&mut details, "missing from the file", &missing);
    let unused: Vec<&str> = result
        .unused
        .iter()
        .map(String::as_str)
        .filter(|name| !ignored_targets.iter().any(|ignored| ignored == name))
        .collect();
    list_names(&mut details, "in the file but not in the model", &unused);
    let errors: Vec<String> = result.errors.iter().map(describe_apply_error).collect();
    let errors: Vec<&str> = errors.iter().map(String::as_str).collect();
    list_names(&mut details, "wrong", &errors);
    if details.is_empty() {
        Ok(module)
    } else {
        Err(PretrainedError::Mismatch {
            path: path.to_path_buf(),
            architecture: architecture.to_string(),
            details: details.join("\n"),
        })
    }
}

/// Reads the tensor `name` from a safetensors file (e.g. a reference output saved by PyTorch).
pub fn read_safetensors(path: &Path, name: &str) -> Result<TensorData, PretrainedError> {
    let read_error = |message: String| PretrainedError::Read {
        path: path.to_path_buf(),
        message,
    };
    if !path.is_file() {
        return Err(read_error("no such file".into()));
    }
    let mut store = SafetensorsStore::from_file(path);
    let tensor = store
        .get_tensor(name)
        .map_err(|error| read_error(error.to_string()))?
        .ok_or_else(|| read_error(format!("it has no tensor named `{name}`")))?
        .clone();
    let (_, dtype, shape, _, bytes) = tensor
        .into_parts()
        .map_err(|error| read_error(error.to_string()))?;
    Ok(TensorData::from_bytes_vec(bytes.to_vec(), shape, dtype))
}

/// The largest absolute difference relative to the largest expected magnitude,
/// `max |actual − expected| / max |expected|`: how reference outputs are compared (a per-element
/// ratio would be dominated by values that happen to be near zero).
///
/// # Panics
///
/// When the two slices differ in length.
pub fn max_relative_error(actual: &[f32], expected: &[f32]) -> f32 {
    assert_eq!(
        actual.len(),
        expected.len(),
        "compared tensors differ in size"
    );
    let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs()));
    let diff = actual
        .iter()
        .zip(expected)
        .fold(0f32, |m, (a, e)| m.max((a - e).abs()));
    if scale == 0.0 { diff } else { diff / scale }
}

fn describe_apply_error(error: &ApplyError) -> String {
    match error {
        ApplyError::ShapeMismatch {
            path,
            expected,
            found,
        } => format!(
            "{path}: the model needs shape {:?}, the file has {:?}",
            expected.as_slice(),
            found.as_slice()
        ),
        other => other.to_string(),
    }
}

fn list_names(lines: &mut Vec<String>, what: &str, names: &[&str]) {
    if names.is_empty() {
        return;
    }
    lines.push(format!("  {} tensor(s) {what}:", names.len()));
    for name in names.iter().take(LISTED_NAMES) {
        lines.push(format!("    {name}"));
    }
    if names.len() > LISTED_NAMES {
        lines.push(format!("    … and {} more", names.len() - LISTED_NAMES));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_map_applies_rules_in_order() {
        let keys = KeyMap::new()
            .rename(r"^_blocks\.(\d+)\.", "blocks.$1.")
            .rename(r"_bn(\d)", "bn$1");
        assert_eq!(
            keys.map_name("_blocks.12._bn1.weight").unwrap(),
            "blocks.12.bn1.weight"
        );
        assert_eq!(keys.map_name("_fc.bias").unwrap(), "_fc.bias");
    }

    #[test]
    fn relative_error_is_scaled_by_the_largest_expected_value() {
        assert_eq!(max_relative_error(&[1.0, 2.0], &[1.0, 2.0]), 0.0);
        let error = max_relative_error(&[0.001, 4.0], &[0.0, 4.0]);
        assert!((error - 0.00025).abs() < 1e-9, "{error}");
    }

    #[test]
    fn bad_rules_and_missing_files_are_errors() {
        let keys = KeyMap::new().rename("(", "x");
        assert!(matches!(
            keys.map_name("a"),
            Err(PretrainedError::Rule { .. })
        ));
        let missing = Path::new("/nonexistent/weights.pth");
        let error = pytorch_tensor_names(missing).unwrap_err().to_string();
        assert!(error.contains("/nonexistent/weights.pth"), "{error}");
    }
}

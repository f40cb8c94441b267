//! Shapes: element counts, and the shape to send for a declared one.

use crate::error::LoadError;
use crate::spec::InputOptions;

/// Elements in a tensor of `shape`; `what` names it in errors.
pub(super) fn numel(shape: &[i64], what: &str) -> Result<usize, LoadError> {
    shape.iter().try_fold(1usize, |acc, &d| {
        let d = usize::try_from(d)
            .map_err(|_| LoadError::Invalid(format!("{what}: negative dimension in {shape:?}")))?;
        acc.checked_mul(d)
            .ok_or_else(|| LoadError::Invalid(format!("{what}: shape {shape:?} is too large")))
    })
}

/// The shape to send for a declared shape: `--shape` if given (checked against the fixed
/// dims), else `-1` replaced by the batch for the first dim and 1 for the others.
pub(super) fn resolve_shape(
    model: &str,
    input: &str,
    declared: &[i64],
    opts: &InputOptions,
) -> Result<Vec<i64>, LoadError> {
    if let Some(explicit) = opts.shapes.get(input) {
        if explicit.len() != declared.len() {
            return Err(LoadError::Invalid(format!(
                "model '{model}': shape {explicit:?} for input '{input}' has {} dimensions, the model declares {declared:?}",
                explicit.len()
            )));
        }
        for (i, (&e, &d)) in explicit.iter().zip(declared).enumerate() {
            if e < 0 || (d >= 0 && e != d) {
                return Err(LoadError::Invalid(format!(
                    "model '{model}': shape {explicit:?} for input '{input}' does not fit the declared {declared:?} (dimension {i})"
                )));
            }
        }
        return Ok(explicit.clone());
    }
    Ok(declared
        .iter()
        .enumerate()
        .map(|(i, &d)| match (d >= 0, i) {
            (true, _) => d,
            (false, 0) => opts.batch,
            (false, _) => 1,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_resolve() {
        let mut o = InputOptions {
            batch: 8,
            ..Default::default()
        };
        assert_eq!(
            resolve_shape("m", "x", &[-1, 16], &o).ok(),
            Some(vec![8, 16])
        );
        assert_eq!(
            resolve_shape("m", "x", &[-1, -1, 3], &o).ok(),
            Some(vec![8, 1, 3])
        );
        o.shapes.insert("x".into(), vec![2, 16]);
        assert_eq!(
            resolve_shape("m", "x", &[-1, 16], &o).ok(),
            Some(vec![2, 16])
        );
        assert!(resolve_shape("m", "x", &[-1, 15], &o).is_err());
        assert!(resolve_shape("m", "x", &[-1, 16, 1], &o).is_err());
    }
}

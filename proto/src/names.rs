//! Model names, one rule for node and router: they become paths and etcd keys, so only a
//! safe alphabet is allowed.

/// Most characters in a model name.
pub const MAX_MODEL_NAME: usize = 128;

/// True for letters, digits, `_`, `-` and `.`, starting with a letter or digit, without
/// `..`, at most [`MAX_MODEL_NAME`] characters.
pub fn is_valid_model_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_MODEL_NAME
        && !name.contains("..")
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// What an error about a bad name says: the name (escaped) and the rule.
pub fn invalid_model_name(name: &str) -> String {
    format!(
        "invalid model name '{}': use letters, digits, '_', '-' and '.', at most {MAX_MODEL_NAME}, no path characters",
        name.escape_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_with_path_characters_are_rejected() {
        for bad in ["../etc", "a/b", "..", "", ".hidden", "a\\b", "a b", "x..y"] {
            assert!(!is_valid_model_name(bad), "{bad}");
        }
        for good in ["mlp", "mlp_onnx", "resnet-18.v2", "A1"] {
            assert!(is_valid_model_name(good), "{good}");
        }
        assert!(!is_valid_model_name(&"a".repeat(MAX_MODEL_NAME + 1)));
        assert!(invalid_model_name("a/b").contains("'a/b'"));
    }
}

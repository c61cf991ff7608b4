//! JSON merge patch (RFC 7386) and JSON patch (RFC 6902), with the `json-patch` crate: they need no schema.

use serde_json::Value;

/// Why a JSON patch was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonPatchError {
    /// The body is not a list of operations (400).
    #[error("invalid JSON patch: {0}")]
    Decode(String),
    /// An operation failed on the object (422), e.g. a `test` that does not match or a path that is not there.
    #[error("{0}")]
    Apply(String),
}

/// Applies a JSON merge patch (`application/merge-patch+json`) to `doc`.
pub fn merge_patch(doc: &mut Value, patch: &Value) {
    json_patch::merge(doc, patch);
}

/// Applies a JSON patch (`application/json-patch+json`, a list of operations) to `doc`.
///
/// On error `doc` is left partly patched: the caller discards it. (json-patch's rolling-back `patch` panics
/// when its undo fails, as it does for a `move` into a child of what was moved before a failing operation, so
/// the operations are applied without undo.)
///
/// # Errors
/// [`JsonPatchError::Decode`] when `patch` is not a list of operations, [`JsonPatchError::Apply`] when an
/// operation fails.
pub fn json_patch(doc: &mut Value, patch: Value) -> Result<(), JsonPatchError> {
    let patch: json_patch::Patch =
        serde_json::from_value(patch).map_err(|e| JsonPatchError::Decode(e.to_string()))?;
    json_patch::patch_unsafe(doc, &patch).map_err(|e| JsonPatchError::Apply(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn applies_operations_in_order() {
        let mut doc = json!({"a": {"b": 1}});
        json_patch(
            &mut doc,
            json!([{"op": "add", "path": "/c", "value": 2}, {"op": "move", "from": "/a/b", "path": "/d"}]),
        )
        .unwrap();
        assert_eq!(doc, json!({"a": {}, "c": 2, "d": 1}));
    }

    #[test]
    fn a_failing_operation_after_a_move_is_an_error_not_a_panic() {
        // Found by herd-fuzz: undoing the move (from `/a` back into `/a/b`) is a move into itself, on which
        // json-patch's `patch` panics ("unable to undo applied patches").
        let mut doc = json!({"a": {"b": {"c": 1}}});
        let err = json_patch(
            &mut doc,
            json!([{"op": "move", "from": "/a/b", "path": "/a"}, {"op": "remove", "path": "/x"}]),
        )
        .unwrap_err();
        assert!(matches!(err, JsonPatchError::Apply(_)), "{err}");
        let err = json_patch(&mut doc, json!({"op": "add"})).unwrap_err();
        assert!(matches!(err, JsonPatchError::Decode(_)), "{err}");
    }

    #[test]
    fn merge_patch_removes_nulls() {
        let mut doc = json!({"a": 1, "b": {"c": 2}});
        merge_patch(&mut doc, &json!({"a": null, "b": {"d": 3}}));
        assert_eq!(doc, json!({"b": {"c": 2, "d": 3}}));
    }
}

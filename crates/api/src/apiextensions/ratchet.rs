//! Validation ratcheting (kube's `CRDValidationRatcheting`, on by default since 1.30): on an update, a
//! schema or rule error about a value the update left as it was is dropped, so tightening a CRD's
//! schema does not lock existing objects against unrelated changes. Values correlate as kube correlates
//! them: object fields by name, `map` list items by their keys; items of other lists do not correlate
//! (the whole list is compared). Transition rules (those naming `oldSelf`) are never ratcheted.

use serde_json::Value;

use super::structural::{ListKind, Schema};
use crate::validation::Cause;

/// One step of a cause's field path.
enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

fn steps(path: &str) -> Option<Vec<Step<'_>>> {
    let mut out = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, mut rest) = part.split_at(part.find('[').unwrap_or(part.len()));
        if !key.is_empty() {
            out.push(Step::Key(key));
        }
        while let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            out.push(Step::Index(r[..end].parse().ok()?));
            rest = &r[end + 1..];
        }
    }
    Some(out)
}

/// The value at `path` in `new` and the old value it correlates with, if any.
fn correlate<'a>(
    schema: &Schema,
    new: &'a Value,
    old: &'a Value,
    path: &[Step<'_>],
) -> Option<(Option<&'a Value>, Option<&'a Value>)> {
    let (mut s, mut n, mut o) = (Some(schema), Some(new), Some(old));
    for step in path {
        match step {
            Step::Key(k) => {
                n = n.and_then(|v| v.get(*k));
                o = o.and_then(|v| v.get(*k));
                s = s.and_then(|s| s.field(k));
            }
            Step::Index(i) => {
                let item = n.and_then(|v| v.get(*i));
                o = match s.map(|s| &s.list) {
                    Some(ListKind::Map(keys)) => item.and_then(|item| {
                        o.and_then(Value::as_array)?
                            .iter()
                            .find(|old| keys.iter().all(|k| old.get(k) == item.get(k)))
                    }),
                    // Items of atomic lists and sets do not correlate.
                    _ => return None,
                };
                n = item;
                s = s.and_then(|s| s.items.as_deref());
            }
        }
    }
    Some((n, o))
}

/// Drops the causes of `new` about values unchanged from `old` (the caller keeps transition rules'
/// causes out of `causes`).
pub fn ratchet(schema: &Schema, new: &Value, old: &Value, causes: Vec<Cause>) -> Vec<Cause> {
    causes
        .into_iter()
        .filter(|c| {
            // A missing required field is judged at the object that lacks it.
            let at = if c.reason == "FieldValueRequired" {
                c.field.rsplit_once('.').map_or("", |(parent, _)| parent)
            } else {
                c.field.as_str()
            };
            let unchanged = !c.field.starts_with("metadata")
                && steps(at)
                    .and_then(|s| correlate(schema, new, old, &s))
                    .is_some_and(|(n, o)| n.is_some() && n == o);
            !unchanged
        })
        .collect()
}

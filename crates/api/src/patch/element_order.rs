//! The order of merged lists in strategic merge patch: patch items in the patch's (or
//! `$setElementOrder`'s) order, live-only items interleaved where they stood in the live list.

use serde_json::Value;

use super::strategic::{DIRECTIVE, PatchError, SET_ELEMENT_ORDER, bad_arg, go_fmt, no_merge_key};

/// The live order `$setElementOrder` interleaves server-only items by. apimachinery merges the list in
/// place, so the order it consults is the live list after `$patch: delete` removals (shifted left), with
/// the patch's new items written over the freed tail. Reproducing that keeps item order identical to
/// kube-apiserver's when a patch both removes and adds items.
pub(super) fn live_order_seen_by_kube(
    mut live: Vec<Value>,
    patch: &[Value],
    key: &str,
) -> Vec<Value> {
    let mut len = live.len();
    for item in patch {
        if item.get(DIRECTIVE).and_then(Value::as_str) != Some("delete") {
            continue;
        }
        let Some(value) = item.get(key) else { continue };
        while let Some(i) = live[..len].iter().position(|v| v.get(key) == Some(value)) {
            // `append(l[:i], l[i+1:]...)`: the tail shifts left, the last slot keeps its old value.
            let last = live[len - 1].clone();
            live[i..len].rotate_left(1);
            live[len - 1] = last;
            len -= 1;
        }
    }
    for item in patch {
        if item.get(DIRECTIVE).is_some() {
            continue;
        }
        let value = item.get(key);
        if value.is_some() && !live[..len].iter().any(|v| v.get(key) == value) && len < live.len() {
            live[len] = item.clone();
            len += 1;
        }
    }
    live
}

/// Index of the item of `list` whose `key` equals `value`.
pub(super) fn position_by_key(
    list: &[Value],
    key: &str,
    value: &Value,
) -> Result<Option<usize>, PatchError> {
    for (i, item) in list.iter().enumerate() {
        let Value::Object(map) = item else {
            return Err(PatchError::Invalid(format!(
                "value for key {i} is not a map"
            )));
        };
        if map.get(key) == Some(value) {
            return Ok(Some(i));
        }
    }
    Ok(None)
}

/// Checks that the patch list's items appear in `$setElementOrder` and in the same relative order.
pub(super) fn validate_against_order(
    patch: &[Value],
    order: &[Value],
    key: Option<&str>,
) -> Result<(), PatchError> {
    if patch.is_empty() || order.is_empty() {
        return Ok(());
    }
    let kept: Vec<&Value> = match key {
        Some(_) => {
            let mut kept = Vec::new();
            for item in patch {
                let Value::Object(m) = item else {
                    return Err(bad_arg("map[string]interface {}", item));
                };
                if m.get(DIRECTIVE).and_then(Value::as_str) != Some("delete") {
                    kept.push(item);
                }
            }
            kept
        }
        None => patch.iter().collect(),
    };
    let (mut p, mut o) = (0, 0);
    while p < kept.len() && o < order.len() {
        if kept[p].get(DIRECTIVE).is_some() {
            p += 1;
            continue;
        }
        if key_equal(kept[p], &order[o], key)? {
            p += 1;
        }
        o += 1;
    }
    if p < kept.len() {
        return Err(PatchError::Invalid(format!(
            "The order in patch list:\n{}\n doesn't match {SET_ELEMENT_ORDER} list:\n{}\n",
            go_fmt(&Value::Array(patch.to_vec())),
            go_fmt(&Value::Array(order.to_vec()))
        )));
    }
    Ok(())
}

fn key_equal(left: &Value, right: &Value, key: Option<&str>) -> Result<bool, PatchError> {
    let Some(key) = key else {
        return Ok(left == right);
    };
    let l = left
        .as_object()
        .ok_or_else(|| bad_arg("map[string]interface {}", left))?;
    let r = right
        .as_object()
        .ok_or_else(|| bad_arg("map[string]interface {}", right))?;
    let lv = l.get(key).ok_or_else(|| no_merge_key(left, key))?;
    let rv = r.get(key).ok_or_else(|| no_merge_key(right, key))?;
    Ok(lv == rv)
}

/// Splits `items` into those present in `by` (by merge key, or by value for primitives) and the rest.
pub(super) fn partition(
    items: Vec<Value>,
    by: &[Value],
    key: Option<&str>,
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let mut present = Vec::new();
    let mut absent = Vec::new();
    for item in items {
        let found = match key {
            None => by.contains(&item),
            Some(key) => {
                if !item.is_object() {
                    return Err(bad_arg("map[string]interface {}", &item));
                }
                let value = item.get(key).ok_or_else(|| no_merge_key(&item, key))?;
                position_by_key(by, key, value)?.is_some()
            }
        };
        if found {
            present.push(item);
        } else {
            absent.push(item);
        }
    }
    Ok((present, absent))
}

/// Orders `patch_items` by `patch_order` and `server_only` by `server_order`, then interleaves them:
/// a server-only item goes before the next patch item that follows it in the live list.
pub(super) fn normalize_element_order(
    patch_items: Vec<Value>,
    server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    key: Option<&str>,
) -> Result<Vec<Value>, PatchError> {
    let patch_items = sort_by_order(patch_items, patch_order, key)?;
    let server_only = sort_by_order(server_only, server_order, key)?;
    let mut out = Vec::with_capacity(patch_items.len() + server_only.len());
    let mut left = server_only.into_iter().peekable();
    let mut right = patch_items.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => match (
                index_of(server_order, l, key),
                index_of(server_order, r, key),
            ) {
                (Some(li), Some(ri)) => li < ri,
                _ => false,
            },
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    Ok(out)
}

/// Stable sort of `items` by their position in `order`; items marked `$patch: delete` go last.
fn sort_by_order(
    items: Vec<Value>,
    order: &[Value],
    key: Option<&str>,
) -> Result<Vec<Value>, PatchError> {
    let mut deleted = Vec::new();
    let mut kept = Vec::with_capacity(items.len());
    if let Some(key) = key {
        for item in order.iter().chain(&items) {
            let m = item
                .as_object()
                .ok_or_else(|| bad_arg("map[string]interface {}", item))?;
            if !m.contains_key(key) {
                return Err(no_merge_key(item, key));
            }
        }
        for item in items {
            if item.get(DIRECTIVE).and_then(Value::as_str) == Some("delete") {
                deleted.push(item);
            } else {
                kept.push(item);
            }
        }
    } else {
        kept = items;
    }
    kept.sort_by_key(|item| index_of(order, item, key).unwrap_or(usize::MAX));
    kept.extend(deleted);
    Ok(kept)
}

fn index_of(list: &[Value], item: &Value, key: Option<&str>) -> Option<usize> {
    match key {
        None => list.iter().position(|v| v == item),
        Some(key) => {
            let wanted = item.get(key);
            list.iter().position(|v| v.get(key) == wanted)
        }
    }
}

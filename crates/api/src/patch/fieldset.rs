//! Sets of field paths, the unit of ownership in server-side apply, and their `FieldsV1` encoding.
//!
//! A path is a sequence of path elements, each kept in its serialized `FieldsV1` form: `f:<field>`,
//! `k:<json of the key fields>` for an item of a keyed list, `v:<json>` for an item of a set, `i:<n>`
//! for an index. A set is a tree: every node says whether its own path is a member (`"."` in
//! `FieldsV1`) and holds the set of longer paths below it.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

/// A set of field paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FieldSet {
    nodes: BTreeMap<String, Node>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Node {
    member: bool,
    below: FieldSet,
}

/// A path of serialized path elements.
pub(crate) type FieldPath = Vec<String>;

impl FieldSet {
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Adds `path` as a member. The empty path (the object itself) is never a member.
    pub fn insert(&mut self, path: &[String]) {
        let Some((first, rest)) = path.split_first() else {
            return;
        };
        let node = self.nodes.entry(first.clone()).or_default();
        if rest.is_empty() {
            node.member = true;
        } else {
            node.below.insert(rest);
        }
    }

    #[cfg(test)]
    pub fn has(&self, path: &[String]) -> bool {
        match path.split_first() {
            None => false,
            Some((first, rest)) => self.nodes.get(first).is_some_and(|n| {
                if rest.is_empty() {
                    n.member
                } else {
                    n.below.has(rest)
                }
            }),
        }
    }

    /// Whether `pe` itself is a member.
    pub fn has_member(&self, pe: &str) -> bool {
        self.nodes.get(pe).is_some_and(|n| n.member)
    }

    /// The paths below `pe`, with `pe` removed from their front.
    pub fn below(&self, pe: &str) -> Option<&FieldSet> {
        self.nodes
            .get(pe)
            .map(|n| &n.below)
            .filter(|s| !s.is_empty())
    }

    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        for (pe, node) in &other.nodes {
            let mine = out.nodes.entry(pe.clone()).or_default();
            mine.member |= node.member;
            mine.below = mine.below.union(&node.below);
        }
        out
    }

    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet::default();
        for (pe, node) in &self.nodes {
            let (member, below) = match other.nodes.get(pe) {
                Some(o) => (node.member && !o.member, node.below.difference(&o.below)),
                None => (node.member, node.below.clone()),
            };
            if member || !below.is_empty() {
                out.nodes.insert(pe.clone(), Node { member, below });
            }
        }
        out
    }

    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet::default();
        for (pe, node) in &self.nodes {
            if let Some(o) = other.nodes.get(pe) {
                let member = node.member && o.member;
                let below = node.below.intersection(&o.below);
                if member || !below.is_empty() {
                    out.nodes.insert(pe.clone(), Node { member, below });
                }
            }
        }
        out
    }

    /// Makes every field that has members below it a member itself, so that removing the set removes
    /// such fields whole (structured-merge-diff's `EnsureNamedFieldsAreMembers`).
    pub fn with_fields_as_members(&self) -> FieldSet {
        let nodes = self
            .nodes
            .iter()
            .map(|(pe, n)| {
                let below = n.below.with_fields_as_members();
                let member = n.member || (pe.starts_with("f:") && !below.is_empty());
                (pe.clone(), Node { member, below })
            })
            .collect();
        FieldSet { nodes }
    }

    /// Removes `pe` and everything below it.
    pub fn without(&self, pe: &str) -> FieldSet {
        let mut out = self.clone();
        out.nodes.remove(pe);
        out
    }

    /// Every member path, members of a level before the levels below it, as structured-merge-diff
    /// iterates them.
    pub fn paths(&self) -> Vec<FieldPath> {
        let mut out = Vec::new();
        self.collect_paths(&mut Vec::new(), &mut out);
        out
    }

    fn collect_paths(&self, prefix: &mut Vec<String>, out: &mut Vec<FieldPath>) {
        for (pe, node) in &self.nodes {
            if node.member {
                let mut p = prefix.clone();
                p.push(pe.clone());
                out.push(p);
            }
        }
        for (pe, node) in &self.nodes {
            prefix.push(pe.clone());
            node.below.collect_paths(prefix, out);
            prefix.pop();
        }
    }

    /// The `FieldsV1` JSON of the set.
    pub fn to_fields_v1(&self) -> Value {
        let mut map = Map::new();
        for (pe, node) in &self.nodes {
            let mut inner = match node.below.to_fields_v1() {
                Value::Object(m) => m,
                _ => Map::new(),
            };
            if node.member && !inner.is_empty() {
                inner.insert(".".into(), Value::Object(Map::new()));
            }
            map.insert(pe.clone(), Value::Object(inner));
        }
        Value::Object(map)
    }

    /// Parses `FieldsV1` JSON.
    pub fn from_fields_v1(v: &Value) -> Result<FieldSet, String> {
        let Value::Object(map) = v else {
            return Err("FieldsV1 must be an object".into());
        };
        let mut set = FieldSet::default();
        for (key, inner) in map {
            if key == "." {
                continue;
            }
            let pe = canonical(key)?;
            let Value::Object(inner_map) = inner else {
                return Err(format!("FieldsV1 entry {key} must be an object"));
            };
            let below = FieldSet::from_fields_v1(inner)?;
            let member = inner_map.is_empty() || inner_map.contains_key(".");
            let node = set.nodes.entry(pe).or_default();
            node.member |= member;
            node.below = node.below.union(&below);
        }
        Ok(set)
    }
}

/// Re-serializes a path element so equal elements compare equal (key fields sorted, JSON compact).
fn canonical(pe: &str) -> Result<String, String> {
    let bad = || format!("invalid path element {pe:?}");
    let (kind, rest) = pe.split_at_checked(2).ok_or_else(bad)?;
    match kind {
        "f:" => Ok(pe.to_string()),
        "i:" => rest
            .parse::<usize>()
            .map(|i| format!("i:{i}"))
            .map_err(|_| bad()),
        "v:" => serde_json::from_str::<Value>(rest)
            .map(|v| format!("v:{v}"))
            .map_err(|_| bad()),
        "k:" => match serde_json::from_str::<Value>(rest) {
            Ok(v @ Value::Object(_)) => Ok(format!("k:{v}")),
            _ => Err(bad()),
        },
        _ => Err(bad()),
    }
}

/// `f:<name>`.
pub(crate) fn field(name: &str) -> String {
    format!("f:{name}")
}

/// `k:{...}` for the key fields of a keyed list item.
pub(crate) fn key(fields: Map<String, Value>) -> String {
    format!("k:{}", Value::Object(fields))
}

/// `v:<json>` for an item of a set.
pub(crate) fn value(v: &Value) -> String {
    format!("v:{v}")
}

/// A path as structured-merge-diff prints it: `.spec.containers[name="app"].image`.
pub(crate) fn display(path: &[String]) -> String {
    path.iter().map(|pe| display_element(pe)).collect()
}

fn display_element(pe: &str) -> String {
    let (kind, rest) = pe.split_at_checked(2).unwrap_or(("", pe));
    match kind {
        "f:" => format!(".{rest}"),
        "i:" => format!("[{rest}]"),
        "v:" => match serde_json::from_str::<Value>(rest) {
            Ok(v) => format!("[={}]", value_string(&v)),
            Err(_) => format!("[={rest}]"),
        },
        "k:" => match serde_json::from_str::<Value>(rest) {
            Ok(Value::Object(m)) => format!(
                "[{}]",
                m.iter()
                    .map(|(k, v)| format!("{k}={}", value_string(v)))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            _ => format!("[{rest}]"),
        },
        _ => pe.to_string(),
    }
}

/// structured-merge-diff's `value.ToString`: strings quoted, other scalars bare.
fn value_string(v: &Value) -> String {
    match v {
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(value_string).collect::<Vec<_>>().join(",")
        ),
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| format!("{k}={}", value_string(v)))
            .collect(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn path(elements: &[&str]) -> FieldPath {
        elements.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn fields_v1_round_trips_with_self_markers() {
        let v1 = json!({
            "f:metadata": {"f:labels": {".": {}, "f:app": {}}},
            "f:spec": {
                "f:replicas": {},
                "f:containers": {"k:{\"name\":\"app\"}": {".": {}, "f:image": {}}}
            }
        });
        let set = FieldSet::from_fields_v1(&v1).expect("valid");
        assert!(set.has(&path(&["f:spec", "f:replicas"])));
        assert!(set.has(&path(&["f:metadata", "f:labels"])));
        assert!(!set.has(&path(&["f:spec"])));
        assert!(set.has(&path(&["f:spec", "f:containers", "k:{\"name\":\"app\"}"])));
        assert_eq!(set.to_fields_v1(), v1);
    }

    #[test]
    fn key_elements_are_canonical() {
        let a = FieldSet::from_fields_v1(
            &json!({"k:{ \"protocol\": \"TCP\", \"containerPort\": 80 }": {}}),
        )
        .expect("valid");
        let mut b = FieldSet::default();
        let mut k = Map::new();
        k.insert("containerPort".into(), json!(80));
        k.insert("protocol".into(), json!("TCP"));
        b.insert(&[key(k)]);
        assert_eq!(a, b);
        assert!(FieldSet::from_fields_v1(&json!({"x:1": {}})).is_err());
    }

    #[test]
    fn set_algebra_and_paths() {
        let mut a = FieldSet::default();
        a.insert(&path(&["f:spec", "f:replicas"]));
        a.insert(&path(&["f:spec", "f:paused"]));
        let mut b = FieldSet::default();
        b.insert(&path(&["f:spec", "f:replicas"]));
        b.insert(&path(&["f:data", "f:x"]));
        assert_eq!(
            a.intersection(&b).paths(),
            vec![path(&["f:spec", "f:replicas"])]
        );
        assert_eq!(
            a.difference(&b).paths(),
            vec![path(&["f:spec", "f:paused"])]
        );
        assert_eq!(a.union(&b).paths().len(), 3);
        assert!(a.with_fields_as_members().has(&path(&["f:spec"])));
    }

    #[test]
    fn paths_print_like_structured_merge_diff() {
        let p = path(&[
            "f:spec",
            "f:containers",
            "k:{\"name\":\"app\"}",
            "f:ports",
            "k:{\"containerPort\":80,\"protocol\":\"TCP\"}",
        ]);
        assert_eq!(
            display(&p),
            ".spec.containers[name=\"app\"].ports[containerPort=80,protocol=\"TCP\"]"
        );
        assert_eq!(
            display(&path(&["f:metadata", "f:finalizers", "v:\"a\""])),
            ".metadata.finalizers[=\"a\"]"
        );
    }
}

//! Label selectors (`app=web,tier!=db,env in (a,b),!legacy`) and field selectors (`spec.nodeName=n1`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector as LabelSelectorSpec;
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unable to parse requirement: {0}")]
pub struct SelectorError(pub String);

/// kube's selection operators over one label (`selection.Operator`): `=`/`==` select as `In` with one
/// value and `!=` as `NotIn`, as `labels.Requirement` does; `Gt`/`Lt` only occur in node selectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
    Gt,
    Lt,
}

impl Operator {
    /// The operator of a `matchExpressions` entry; `None` for one kube does not know.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "In" => Self::In,
            "NotIn" => Self::NotIn,
            "Exists" => Self::Exists,
            "DoesNotExist" => Self::DoesNotExist,
            "Gt" => Self::Gt,
            "Lt" => Self::Lt,
            _ => return None,
        })
    }

    /// Whether the operator holds for a label whose value is `have` (`None`: the label is absent). `Gt`
    /// and `Lt` compare integers and need exactly one value; anything else matches nothing.
    pub fn holds(self, have: Option<&str>, values: &[String]) -> bool {
        match self {
            Self::In => have.is_some_and(|h| values.iter().any(|v| v == h)),
            Self::NotIn => have.is_none_or(|h| values.iter().all(|v| v != h)),
            Self::Exists => have.is_some(),
            Self::DoesNotExist => have.is_none(),
            Self::Gt | Self::Lt => {
                let int = |s: &str| s.parse::<i64>().ok();
                let (Some(h), [v]) = (have.and_then(int), values) else {
                    return false;
                };
                let Some(v) = int(v) else { return false };
                if self == Self::Gt { h > v } else { h < v }
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Requirement {
    key: String,
    op: Operator,
    values: Vec<String>,
}

impl Requirement {
    fn new(key: String, op: Operator, values: Vec<String>) -> Self {
        Self { key, op, values }
    }

    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let have = labels.get(&self.key).map(String::as_str);
        self.op.holds(have, &self.values)
    }
}

/// The operator of a `metav1.LabelSelector` expression (`Gt`/`Lt` belong to node selectors only).
fn label_operator(s: &str) -> Option<Operator> {
    Operator::parse(s).filter(|op| !matches!(op, Operator::Gt | Operator::Lt))
}

/// metav1 `LabelSelector` semantics without building a selector (the scheduler's hot path): matchLabels and
/// every matchExpression must hold; an empty selector matches everything, an unknown operator nothing.
pub fn label_selector_matches(sel: &LabelSelectorSpec, labels: &BTreeMap<String, String>) -> bool {
    let by_labels = sel
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    by_labels
        && sel.match_expressions.iter().flatten().all(|e| {
            label_operator(&e.operator).is_some_and(|op| {
                op.holds(
                    labels.get(&e.key).map(String::as_str),
                    e.values.as_deref().unwrap_or_default(),
                )
            })
        })
}

/// One `NodeSelectorRequirement` against the value of its key (`None`: absent), as kube's
/// `nodeaffinity` helpers evaluate it.
pub fn node_requirement_matches(r: &NodeSelectorRequirement, have: Option<&str>) -> bool {
    Operator::parse(&r.operator)
        .is_some_and(|op| op.holds(have, r.values.as_deref().unwrap_or_default()))
}

/// A node selector term: every matchExpression (on labels) and matchField (`metadata.name`) must hold; a
/// term with neither matches no node.
pub fn node_selector_term_matches(
    term: &NodeSelectorTerm,
    name: &str,
    labels: &BTreeMap<String, String>,
) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or_default();
    let fields = term.match_fields.as_deref().unwrap_or_default();
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    exprs
        .iter()
        .all(|r| node_requirement_matches(r, labels.get(&r.key).map(String::as_str)))
        && fields.iter().all(|r| {
            let have = (r.key == "metadata.name").then_some(name);
            have.is_some() && node_requirement_matches(r, have)
        })
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(Vec<Requirement>);

impl LabelSelector {
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut reqs = Vec::new();
        for term in split_terms(s) {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            reqs.push(parse_requirement(term)?);
        }
        Ok(Self(reqs))
    }

    /// The selector of `matchLabels` (every pair must be present).
    pub fn from_map(labels: &BTreeMap<String, String>) -> Self {
        Self(
            labels
                .iter()
                .map(|(k, v)| Requirement::new(k.clone(), Operator::In, vec![v.clone()]))
                .collect(),
        )
    }

    /// The selector of a `metav1.LabelSelector` (matchLabels and matchExpressions).
    pub fn from_k8s(sel: &LabelSelectorSpec) -> Result<Self, SelectorError> {
        let mut out = sel
            .match_labels
            .as_ref()
            .map(Self::from_map)
            .unwrap_or_default();
        for e in sel.match_expressions.iter().flatten() {
            let op = label_operator(&e.operator)
                .ok_or_else(|| SelectorError(format!("unknown operator {:?}", e.operator)))?;
            let values = e.values.clone().unwrap_or_default();
            out.0.push(Requirement::new(e.key.clone(), op, values));
        }
        Ok(out)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| r.matches(labels))
    }

    /// Matches the `metadata.labels` of a JSON object.
    pub fn matches_object(&self, obj: &Value) -> bool {
        if self.0.is_empty() {
            return true;
        }
        let labels: BTreeMap<String, String> = obj
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        self.matches(&labels)
    }
}

/// Splits on commas that are not inside `( … )`.
fn split_terms(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn parse_requirement(term: &str) -> Result<Requirement, SelectorError> {
    let bad = || SelectorError(term.to_string());
    if let Some(key) = term.strip_prefix('!') {
        let key = checked_key(key.trim(), term)?;
        return Ok(Requirement::new(key, Operator::DoesNotExist, Vec::new()));
    }
    if let Some((k, v)) = term.split_once("!=") {
        let key = checked_key(k.trim(), term)?;
        return Ok(Requirement::new(
            key,
            Operator::NotIn,
            vec![v.trim().to_string()],
        ));
    }
    if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
        let key = checked_key(k.trim(), term)?;
        return Ok(Requirement::new(
            key,
            Operator::In,
            vec![v.trim().to_string()],
        ));
    }
    for (op, notin) in [(" notin ", true), (" in ", false)] {
        if let Some((k, rest)) = term.split_once(op) {
            let rest = rest.trim();
            let inner = rest
                .strip_prefix('(')
                .and_then(|r| r.strip_suffix(')'))
                .ok_or_else(bad)?;
            let values = inner
                .split(',')
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .collect();
            let key = checked_key(k.trim(), term)?;
            let op = if notin { Operator::NotIn } else { Operator::In };
            return Ok(Requirement::new(key, op, values));
        }
    }
    let key = checked_key(term, term)?;
    Ok(Requirement::new(key, Operator::Exists, Vec::new()))
}

fn checked_key(key: &str, term: &str) -> Result<String, SelectorError> {
    let ok = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if ok {
        Ok(key.to_string())
    } else {
        Err(SelectorError(term.to_string()))
    }
}

/// A field selector: `path=value`, `path==value` and `path!=value` terms over dotted JSON paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(Vec<(String, String, bool)>);

impl FieldSelector {
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut terms = Vec::new();
        for term in s.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let (k, v, eq) = if let Some((k, v)) = term.split_once("!=") {
                (k, v, false)
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                (k, v, true)
            } else {
                return Err(SelectorError(term.to_string()));
            };
            let k = k.trim();
            if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '.') {
                return Err(SelectorError(term.to_string()));
            }
            terms.push((k.to_string(), v.trim().to_string(), eq));
        }
        Ok(Self(terms))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A missing field reads as the empty string, as in Kubernetes (`spec.nodeName=` selects unbound pods).
    pub fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|(path, want, eq)| {
            let pointer = format!("/{}", path.replace('.', "/"));
            let have = match obj.pointer(&pointer) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            (have == *want) == *eq
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn label_selector_operators() {
        let l = labels(&[("app", "web"), ("tier", "front")]);
        let check = |s: &str| LabelSelector::parse(s).expect(s).matches(&l);
        assert!(check(""));
        assert!(check("app=web"));
        assert!(check("app==web,tier"));
        assert!(!check("app!=web"));
        assert!(check("tier in (front, back)"));
        assert!(!check("tier notin (front)"));
        assert!(check("!legacy"));
        assert!(!check("!app"));
        assert!(check("app in (web),tier notin (db,cache)"));
    }

    #[test]
    fn label_selector_rejects_garbage() {
        assert!(LabelSelector::parse("app in web").is_err());
        assert!(LabelSelector::parse("a b").is_err());
    }

    #[test]
    fn field_selector_reads_dotted_paths() {
        let pod = json!({"metadata": {"name": "p1"}, "spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
        let check = |s: &str| FieldSelector::parse(s).expect(s).matches(&pod);
        assert!(check("spec.nodeName=n1"));
        assert!(check("metadata.name==p1,status.phase!=Failed"));
        assert!(!check("spec.nodeName="));
        assert!(check("spec.schedulerName="));
        assert!(FieldSelector::parse("nonsense").is_err());
    }
    #[test]
    fn metav1_label_selector_matches_like_the_parsed_one() {
        let sel: LabelSelectorSpec = serde_json::from_value(json!({
        "matchLabels": {"app": "web"},
        "matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["a", "b"]},
            {"key": "canary", "operator": "DoesNotExist"},
            {"key": "env", "operator": "NotIn", "values": ["prod"]},
        ]}))
        .unwrap();
        let parsed = LabelSelector::from_k8s(&sel).unwrap();
        for (pairs, want) in [
            (&[("app", "web"), ("tier", "a")][..], true),
            (&[("app", "web"), ("tier", "c")][..], false),
            (&[("app", "web"), ("tier", "a"), ("canary", "1")][..], false),
            (&[("app", "web"), ("tier", "a"), ("env", "prod")][..], false),
        ] {
            let l = labels(pairs);
            assert_eq!(label_selector_matches(&sel, &l), want, "{pairs:?}");
            assert_eq!(parsed.matches(&l), want, "{pairs:?}");
        }
        assert!(label_selector_matches(
            &LabelSelectorSpec::default(),
            &labels(&[])
        ));
        // Gt/Lt are node-selector operators: a label selector with them matches nothing and does not parse.
        let gt: LabelSelectorSpec = serde_json::from_value(
            json!({"matchExpressions": [{"key": "n", "operator": "Gt", "values": ["1"]}]}),
        )
        .unwrap();
        assert!(!label_selector_matches(&gt, &labels(&[("n", "2")])));
        assert!(LabelSelector::from_k8s(&gt).is_err());
    }

    #[test]
    fn node_selector_terms_cover_every_operator_and_metadata_name() {
        let term =
            |v: serde_json::Value| -> NodeSelectorTerm { serde_json::from_value(v).unwrap() };
        let l = labels(&[("disk", "ssd"), ("cores", "8")]);
        let ok = |v| node_selector_term_matches(&term(v), "n1", &l);
        assert!(ok(
            json!({"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]})
        ));
        assert!(!ok(
            json!({"matchExpressions": [{"key": "disk", "operator": "NotIn", "values": ["ssd"]}]})
        ));
        assert!(ok(
            json!({"matchExpressions": [{"key": "disk", "operator": "Exists"}]})
        ));
        assert!(ok(
            json!({"matchExpressions": [{"key": "gpu", "operator": "DoesNotExist"}]})
        ));
        assert!(ok(
            json!({"matchExpressions": [{"key": "cores", "operator": "Gt", "values": ["4"]}]})
        ));
        assert!(!ok(
            json!({"matchExpressions": [{"key": "cores", "operator": "Lt", "values": ["4"]}]})
        ));
        assert!(!ok(
            json!({"matchExpressions": [{"key": "disk", "operator": "Gt", "values": ["4"]}]})
        ));
        assert!(!ok(
            json!({"matchExpressions": [{"key": "disk", "operator": "Near", "values": ["ssd"]}]})
        ));
        assert!(ok(
            json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]})
        ));
        assert!(!ok(
            json!({"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]})
        ));
        assert!(!ok(json!({})), "an empty term matches nothing");
    }
}

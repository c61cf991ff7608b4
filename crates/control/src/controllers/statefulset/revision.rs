//! A StatefulSet's revision history, as kube's `controller/history` keeps it: one apps/v1
//! ControllerRevision per distinct pod template, named `<set>-<hash>`, owned by the set, labelled like the
//! template, whose `data` is the strategic merge patch that puts that template back
//! (`{"spec": {"template": {…, "$patch": "replace"}}}`, which `kubectl rollout undo` applies). The update
//! revision is the one of the template now; the current revision the one every pod had when the last
//! rollout completed. Pods carry their revision's name in `controller-revision-hash`.

use serde_json::{Value, json};

use crate::controllers::deployment::template_hash;

/// The label of a pod that names its revision.
pub const REVISION_LABEL: &str = "controller-revision-hash";
/// The label of a ControllerRevision with its hash (kube's `ControllerRevisionHashLabel`).
pub const HASH_LABEL: &str = "controller.kubernetes.io/hash";

/// The `data` of a revision of `template` (kube's `getPatch`).
pub fn data_of(template: &Value) -> Value {
    let mut template = template.clone();
    if let Some(t) = template.as_object_mut() {
        t.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": template}})
}

/// The pod template a revision restores.
pub fn template_of(revision: &Value) -> Option<Value> {
    let mut template = revision.pointer("/data/spec/template")?.clone();
    template.as_object_mut()?.remove("$patch");
    Some(template)
}

/// The hash of a revision's data, probed with the set's `collisionCount` (kube's `HashControllerRevision`):
/// another count gives another name when two templates' hashes collide.
pub fn hash(data: &Value, collision_count: i32) -> String {
    if collision_count == 0 {
        template_hash(data)
    } else {
        template_hash(&json!({"data": data, "probe": collision_count}))
    }
}

/// Whether two revisions restore the same template (kube's `EqualRevision`, over the decoded data).
pub fn same_data(a: &Value, b: &Value) -> bool {
    template_hash(a) == template_hash(b)
}

/// A new revision of `set` (JSON as stored) numbered `number`: named `<set>-<hash>`, labelled with the
/// template's labels and the hash, annotated like the set, owned by it.
pub fn new_revision(set: &Value, data: Value, hash: &str, number: i64, owner: Value) -> Value {
    let md = &set["metadata"];
    let mut labels = set
        .pointer("/spec/template/metadata/labels")
        .cloned()
        .filter(Value::is_object)
        .unwrap_or(json!({}));
    labels[HASH_LABEL] = json!(hash);
    let annotations = md
        .get("annotations")
        .cloned()
        .filter(Value::is_object)
        .unwrap_or(json!({}));
    json!({
        "apiVersion": "apps/v1",
        "kind": "ControllerRevision",
        "metadata": {
            "name": format!("{}-{hash}", md["name"].as_str().unwrap_or_default()),
            "namespace": md["namespace"],
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [owner],
        },
        "data": data,
        "revision": number,
    })
}

/// kube's `truncateHistory`: of `revisions` (name, number), the ones to delete — the oldest that neither
/// a pod nor the status names (`live`), beyond `limit` of them.
pub fn to_truncate<'a>(revisions: &'a [(String, i64)], live: &[&str], limit: i32) -> Vec<&'a str> {
    let mut history: Vec<&(String, i64)> = revisions
        .iter()
        .filter(|(name, _)| !live.contains(&name.as_str()))
        .collect();
    let Ok(limit) = usize::try_from(limit) else {
        return Vec::new();
    };
    if history.len() <= limit {
        return Vec::new();
    }
    history.sort_by_key(|(name, number)| (*number, name.clone()));
    let excess = history.len() - limit;
    history
        .into_iter()
        .take(excess)
        .map(|(name, _)| name.as_str())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_revision_restores_its_template_by_replacing_it() {
        let template = json!({"metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "a:1"}]}});
        let data = data_of(&template);
        assert_eq!(data["spec"]["template"]["$patch"], "replace");
        let set = json!({"metadata": {"name": "web", "namespace": "ns", "annotations": {"a": "1"}},
            "spec": {"template": template}});
        let revision = new_revision(&set, data.clone(), "abc", 3, json!({"uid": "u"}));
        assert_eq!(revision["metadata"]["name"], "web-abc");
        assert_eq!(
            revision["metadata"]["labels"],
            json!({"app": "web", HASH_LABEL: "abc"})
        );
        assert_eq!(revision["metadata"]["annotations"], json!({"a": "1"}));
        assert_eq!(template_of(&revision), Some(template));
        assert_ne!(hash(&data, 0), hash(&data, 1));
        assert!(same_data(&data, &data_of(&set["spec"]["template"])));
    }

    #[test]
    fn history_keeps_live_revisions_and_the_newest_others() {
        let revisions: Vec<(String, i64)> = (1..=5).map(|n| (format!("r{n}"), n)).collect();
        assert_eq!(to_truncate(&revisions, &["r1", "r5"], 1), ["r2", "r3"]);
        assert!(to_truncate(&revisions, &["r5"], 10).is_empty());
        assert_eq!(
            to_truncate(&revisions, &["r5"], 0),
            ["r1", "r2", "r3", "r4"]
        );
    }
}

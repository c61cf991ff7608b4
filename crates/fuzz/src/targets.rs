//! The fuzz targets. Each one generates an input as bytes (self-contained, so a panicking input can be printed
//! and replayed) and runs it through the code under test, which must answer `Ok` or `Err`, never panic.
//!
//! Inputs that carry several parts put them on lines: `plural\nbody` for admission, `kind\noriginal\npatch` for
//! patches (the JSON parts are written without newlines; the last part may hold any bytes).

use std::collections::BTreeMap;

use herd_api::resources::{self, RESOURCES, ResourceInfo};
use herd_api::{FieldSelector, LabelSelector};
use serde_json::Value;

use crate::corpus::Corpus;
use crate::mutate::{mutate_bytes, mutate_value, value};
use crate::rng::Rng;

/// A fuzz target: how to generate an input, and how to run one.
#[derive(Clone, Copy)]
pub struct Target {
    pub name: &'static str,
    pub generate: fn(&mut Rng, &Corpus) -> Vec<u8>,
    /// `Ok` when the input was accepted, `Err` with the reason it was refused.
    pub run: fn(&[u8]) -> Result<(), String>,
}

/// Every target, in the order runs report them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "admit-json",
        generate: gen_admit_json,
        run: run_admit_json,
    },
    Target {
        name: "admit-yaml",
        generate: gen_admit_yaml,
        run: run_admit_yaml,
    },
    Target {
        name: "protobuf",
        generate: gen_protobuf,
        run: run_protobuf,
    },
    Target {
        name: "patch-merge",
        generate: gen_patch_merge,
        run: run_patch_merge,
    },
    Target {
        name: "patch-json",
        generate: gen_patch_json,
        run: run_patch_json,
    },
    Target {
        name: "patch-strategic",
        generate: gen_patch_strategic,
        run: run_patch_strategic,
    },
    Target {
        name: "patch-apply",
        generate: gen_patch_apply,
        run: run_patch_apply,
    },
    Target {
        name: "label-selector",
        generate: gen_label_selector,
        run: run_label_selector,
    },
    Target {
        name: "field-selector",
        generate: gen_field_selector,
        run: run_field_selector,
    },
    Target {
        name: "quantity",
        generate: gen_quantity,
        run: run_quantity,
    },
    Target {
        name: "oci-manifest",
        generate: gen_oci_manifest,
        run: run_oci_manifest,
    },
];

/// One of `items` (a helper that names the element type for inference).
fn pick_str(rng: &mut Rng, items: &[&'static str]) -> &'static str {
    items[rng.below(items.len())]
}

/// The served resource named `plural` (any group).
fn resource(plural: &str) -> Option<&'static ResourceInfo> {
    RESOURCES.iter().find(|r| r.plural == plural)
}

/// A seed object, structure-mutated most of the time; a random value now and then.
pub fn object(rng: &mut Rng, corpus: &Corpus) -> Value {
    if rng.chance(1, 12) {
        return value(rng, corpus, 5);
    }
    let mut v = rng.pick(&corpus.objects).clone();
    if rng.chance(7, 8) {
        mutate_value(rng, corpus, &mut v);
    }
    v
}

/// The plural an object is admitted as: its own kind's mostly, any served resource sometimes.
fn plural_for(rng: &mut Rng, v: &Value) -> &'static str {
    let own = resources::by_kind(
        v["apiVersion"].as_str().unwrap_or_default(),
        v["kind"].as_str().unwrap_or_default(),
    );
    match own {
        Some(r) if rng.chance(7, 8) => r.plural,
        _ => rng.pick(RESOURCES).plural,
    }
}

fn join(parts: &[&[u8]]) -> Vec<u8> {
    parts.join(&b'\n')
}

fn split3(input: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let mut parts = input.splitn(3, |b| *b == b'\n');
    Some((parts.next()?, parts.next()?, parts.next()?))
}

fn split2(input: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut parts = input.splitn(2, |b| *b == b'\n');
    Some((parts.next()?, parts.next()?))
}

fn gen_admit_json(rng: &mut Rng, corpus: &Corpus) -> Vec<u8> {
    let v = object(rng, corpus);
    let plural = plural_for(rng, &v);
    let mut body = serde_json::to_vec(&v).unwrap_or_default();
    if rng.chance(1, 3) {
        mutate_bytes(rng, &mut body);
    }
    join(&[plural.as_bytes(), &body])
}

fn gen_admit_yaml(rng: &mut Rng, corpus: &Corpus) -> Vec<u8> {
    let v = object(rng, corpus);
    let plural = plural_for(rng, &v);
    let mut body = serde_yaml::to_string(&v).unwrap_or_default().into_bytes();
    if rng.chance(1, 2) {
        mutate_bytes(rng, &mut body);
    }
    join(&[plural.as_bytes(), &body])
}

/// Admission as the API server runs it on a create: unknown fields for `fieldValidation`, then `admit`; an
/// accepted object is admitted again as an update of itself.
fn admit(plural: &[u8], v: Value) -> Result<(), String> {
    let plural = std::str::from_utf8(plural).map_err(|e| e.to_string())?;
    let res = resource(plural).ok_or("no such resource")?;
    let _ = herd_api::unknown_fields(res, &v);
    let stored = herd_api::admit(res, v.clone()).map_err(|e| e.to_string())?;
    herd_api::admit_update(res, &stored, v).map_err(|e| e.to_string())?;
    Ok(())
}

fn run_admit_json(input: &[u8]) -> Result<(), String> {
    let (plural, body) = split2(input).ok_or("no body")?;
    let v: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    admit(plural, v)
}

fn run_admit_yaml(input: &[u8]) -> Result<(), String> {
    let (plural, body) = split2(input).ok_or("no body")?;
    let v: Value = serde_yaml::from_slice(body).map_err(|e| e.to_string())?;
    admit(plural, v)
}

fn gen_protobuf(rng: &mut Rng, corpus: &Corpus) -> Vec<u8> {
    let mut body = rng.pick(&corpus.protobuf).clone();
    mutate_bytes(rng, &mut body);
    if rng.chance(1, 4) {
        // Splice in part of another body: fields of one kind inside another.
        let other = rng.pick(&corpus.protobuf);
        let start = rng.below(other.len());
        let end = (start + rng.below(64)).min(other.len());
        let at = rng.below(body.len() + 1);
        body.splice(at..at, other[start..end].iter().copied());
    }
    body
}

fn run_protobuf(input: &[u8]) -> Result<(), String> {
    let v = herd_api::protobuf::decode(input).map_err(|e| e.to_string())?;
    let res = resources::by_kind(
        v["apiVersion"].as_str().unwrap_or_default(),
        v["kind"].as_str().unwrap_or_default(),
    )
    .ok_or("no such kind")?;
    admit(res.plural.as_bytes(), v)
}

/// `kind\noriginal\npatch` with a seed object as the original and `patch` made by `make`.
fn gen_patch(
    rng: &mut Rng,
    corpus: &Corpus,
    make: fn(&mut Rng, &Corpus, &Value) -> Value,
) -> Vec<u8> {
    let original = rng.pick(&corpus.objects).clone();
    let kind = if rng.chance(15, 16) {
        original["kind"].as_str().unwrap_or_default().to_string()
    } else {
        rng.pick(RESOURCES).kind.to_string()
    };
    let patch = patch_body(rng, corpus, make, &original);
    let original = serde_json::to_vec(&original).unwrap_or_default();
    join(&[kind.as_bytes(), &original, &patch])
}

/// A patch body for `original` made by `make`, byte-mutated now and then.
fn patch_body(
    rng: &mut Rng,
    corpus: &Corpus,
    make: fn(&mut Rng, &Corpus, &Value) -> Value,
    original: &Value,
) -> Vec<u8> {
    let patch = make(rng, corpus, original);
    let mut patch = serde_json::to_vec(&patch).unwrap_or_default();
    if rng.chance(1, 4) {
        mutate_bytes(rng, &mut patch);
    }
    patch
}

/// The patch types, by the content type a PATCH request names.
pub const PATCH_CONTENT_TYPES: &[&str] = &[
    "application/merge-patch+json",
    "application/json-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
];

/// A fuzzed body of the patch type `content_type` (one of [`PATCH_CONTENT_TYPES`]) for `original`, as the
/// patch targets make them.
pub fn fuzzed_patch(
    rng: &mut Rng,
    corpus: &Corpus,
    content_type: &str,
    original: &Value,
) -> Vec<u8> {
    let make = if content_type == "application/json-patch+json" {
        json_ops
    } else {
        changed_copy
    };
    patch_body(rng, corpus, make, original)
}

/// A fuzzed create body as the admission targets make them: the resource's plural, the body, and whether it is
/// YAML (else JSON).
pub fn fuzzed_create(rng: &mut Rng, corpus: &Corpus) -> (&'static ResourceInfo, Vec<u8>, bool) {
    let yaml = rng.chance(1, 3);
    let input = if yaml {
        gen_admit_yaml(rng, corpus)
    } else {
        gen_admit_json(rng, corpus)
    };
    let (plural, body) = split2(&input).expect("generated with a plural line");
    let res = std::str::from_utf8(plural)
        .ok()
        .and_then(resource)
        .expect("a served plural");
    (res, body.to_vec(), yaml)
}

/// A mutated copy of (part of) the original: what a merge or apply patch looks like.
fn changed_copy(rng: &mut Rng, corpus: &Corpus, original: &Value) -> Value {
    let mut p = original.clone();
    mutate_value(rng, corpus, &mut p);
    p
}

fn gen_patch_merge(rng: &mut Rng, corpus: &Corpus) -> Vec<u8> {
    gen_patch(rng, corpus, changed_copy)
}

fn gen_patch_strategic(rng: &mut Rng, corpus: &Corpus) -> Vec<u8> {
    gen_patch(rng, corpus, changed_copy)
}

fn gen_patch_apply(rng: &mut Rng, corpus: &Corpus) -> Vec<u8> {
    gen_patch(rng, corpus, changed_copy)
}

/// The JSON pointers of `v`'s nodes.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => m.iter().for_each(|(k, c)| {
            pointers(
                c,
                format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                out,
            )
        }),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .for_each(|(i, c)| pointers(c, format!("{at}/{i}"), out)),
        _ => {}
    }
    out.push(at);
}

fn gen_patch_json(rng: &mut Rng, corpus: &Corpus) -> Vec<u8> {
    gen_patch(rng, corpus, json_ops)
}

/// A list of JSON patch operations on the paths of `original` (and a few that are not there).
fn json_ops(rng: &mut Rng, corpus: &Corpus, original: &Value) -> Value {
    {
        let mut paths = Vec::new();
        pointers(original, String::new(), &mut paths);
        paths.extend(
            [
                "/-",
                "/spec/containers/-",
                "/metadata/labels/~1",
                "/x/y",
                "//",
                "~",
            ]
            .map(String::from),
        );
        let ops = (0..1 + rng.below(4))
            .map(|_| {
                let mut op = serde_json::json!({
                    "op": rng.pick(&["add", "remove", "replace", "move", "copy", "test", "x"]),
                    "path": rng.pick(&paths),
                });
                match rng.below(3) {
                    0 => op["value"] = value(rng, corpus, 3),
                    1 => op["from"] = Value::String(rng.pick(&paths).clone()),
                    _ => {}
                }
                op
            })
            .collect();
        let mut patch = Value::Array(ops);
        if rng.chance(1, 4) {
            mutate_value(rng, corpus, &mut patch);
        }
        patch
    }
}

/// The parts of a patch input, the original decoded.
fn patch_parts(input: &[u8]) -> Result<(&'static ResourceInfo, Value, &[u8]), String> {
    let (kind, original, patch) = split3(input).ok_or("missing parts")?;
    let kind = std::str::from_utf8(kind).map_err(|e| e.to_string())?;
    let res = RESOURCES
        .iter()
        .find(|r| r.kind == kind)
        .ok_or("no such kind")?;
    let original: Value = serde_json::from_slice(original).map_err(|e| e.to_string())?;
    Ok((res, original, patch))
}

/// What the API server does with a patched object: records the update's ownership and admits it as an update.
fn after_patch(res: &ResourceInfo, original: &Value, patched: Value) -> Result<(), String> {
    let recorded = herd_api::patch::record_update(Some(original), &patched, "fuzz", None, NOW);
    herd_api::admit_update(res, original, recorded).map_err(|e| e.to_string())?;
    Ok(())
}

const NOW: &str = "2024-01-01T00:00:00Z";

fn run_patch_merge(input: &[u8]) -> Result<(), String> {
    let (res, original, patch) = patch_parts(input)?;
    let patch: Value = serde_json::from_slice(patch).map_err(|e| e.to_string())?;
    let mut doc = original.clone();
    herd_api::patch::merge_patch(&mut doc, &patch);
    after_patch(res, &original, doc)
}

fn run_patch_json(input: &[u8]) -> Result<(), String> {
    let (res, original, patch) = patch_parts(input)?;
    let patch: Value = serde_json::from_slice(patch).map_err(|e| e.to_string())?;
    let mut doc = original.clone();
    herd_api::patch::json_patch(&mut doc, patch).map_err(|e| e.to_string())?;
    after_patch(res, &original, doc)
}

fn run_patch_strategic(input: &[u8]) -> Result<(), String> {
    let (res, original, patch) = patch_parts(input)?;
    let patch: Value = serde_json::from_slice(patch).map_err(|e| e.to_string())?;
    let doc =
        herd_api::patch::strategic_merge(&original, &patch, res.kind).map_err(|e| e.to_string())?;
    after_patch(res, &original, doc)
}

fn run_patch_apply(input: &[u8]) -> Result<(), String> {
    let (res, original, config) = patch_parts(input)?;
    // The API server reads apply configurations as YAML (JSON is YAML).
    let config: Value = serde_yaml::from_slice(config).map_err(|e| e.to_string())?;
    let force = input.len().is_multiple_of(2);
    let created = herd_api::patch::server_side_apply(None, &config, "fuzz", force, res.kind, NOW);
    let live = created.as_ref().unwrap_or(&original);
    let applied =
        herd_api::patch::server_side_apply(Some(live), &config, "other", force, res.kind, NOW)
            .map_err(|e| e.to_string())?;
    after_patch(res, &original, applied)
}

/// Label selector text from its grammar's pieces, sometimes byte-mutated.
fn gen_label_selector(rng: &mut Rng, corpus: &Corpus) -> Vec<u8> {
    let keys = [
        "app",
        "tier",
        "a.b/c",
        "example.com/x",
        "-bad",
        "a/b/c",
        "",
        "k8s.io/",
        "x_y",
        "ü",
    ];
    let ops = ["=", "==", "!=", " in ", " notin ", "", " ", "!", "=="];
    let values = [
        "a", "b", "(a,b)", "(a, b)", "()", "(", ")", "", "-x", "a b", "(a,,b)", "x=y",
    ];
    let mut s = String::new();
    for i in 0..1 + rng.below(4) {
        if i > 0 {
            s.push_str(pick_str(rng, &[",", ", ", ",,", " "]));
        }
        if rng.chance(1, 6) {
            s.push('!');
        }
        s.push_str(
            &rng.pick(&keys)
                .repeat(if rng.chance(1, 20) { 30 } else { 1 }),
        );
        s.push_str(pick_str(rng, &ops));
        s.push_str(pick_str(rng, &values));
    }
    let mut bytes = s.into_bytes();
    if rng.chance(1, 3) {
        mutate_bytes(rng, &mut bytes);
    }
    // The second line: a metav1.LabelSelector, as workloads carry.
    let spec = if rng.chance(1, 2) {
        let mut v = serde_json::json!({"matchLabels": {"app": "a"},
            "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]});
        mutate_value(rng, corpus, &mut v);
        v
    } else {
        value(rng, corpus, 3)
    };
    bytes.retain(|b| *b != b'\n');
    join(&[
        &bytes,
        serde_json::to_string(&spec).unwrap_or_default().as_bytes(),
    ])
}

fn labels() -> BTreeMap<String, String> {
    [("app", "a"), ("tier", "b"), ("example.com/x", "")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn run_label_selector(input: &[u8]) -> Result<(), String> {
    let (text, spec) = split2(input).unwrap_or((input, b"null"));
    let text = std::str::from_utf8(text).map_err(|e| e.to_string())?;
    let pod = serde_json::json!({"metadata": {"labels": labels()}});
    let parsed = LabelSelector::parse(text);
    if let Ok(sel) = &parsed {
        sel.matches(&labels());
        sel.matches_object(&pod);
    }
    if let Ok(spec) = serde_json::from_slice::<
        herd_api::k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
    >(spec)
    {
        herd_api::selector::label_selector_matches(&spec, &labels());
        if let Ok(sel) = LabelSelector::from_k8s(&spec) {
            sel.matches(&labels());
        }
    }
    parsed.map(|_| ()).map_err(|e| e.to_string())
}

fn gen_field_selector(rng: &mut Rng, _corpus: &Corpus) -> Vec<u8> {
    let fields = [
        "metadata.name",
        "metadata.namespace",
        "spec.nodeName",
        "status.phase",
        "a..b",
        ".",
        "",
        "x",
    ];
    let ops = ["=", "==", "!=", "", "!", " in "];
    let values = ["a", "", "Running", "a,b", "\\,", "\\", "=", "!"];
    let mut s = String::new();
    for i in 0..1 + rng.below(4) {
        if i > 0 {
            s.push(',');
        }
        s.push_str(pick_str(rng, &fields));
        s.push_str(pick_str(rng, &ops));
        s.push_str(pick_str(rng, &values));
    }
    let mut bytes = s.into_bytes();
    if rng.chance(1, 3) {
        mutate_bytes(rng, &mut bytes);
    }
    bytes
}

fn run_field_selector(input: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(input).map_err(|e| e.to_string())?;
    let sel = FieldSelector::parse(text).map_err(|e| e.to_string())?;
    let pod = serde_json::json!({"metadata": {"name": "a", "namespace": "default"},
        "spec": {"nodeName": "n", "containers": [{"name": "c"}]}, "status": {"phase": "Running"}});
    sel.matches(&pod);
    Ok(())
}

/// Quantity text from its grammar's pieces (sign, digits, point, suffix), sometimes byte-mutated.
fn gen_quantity(rng: &mut Rng, corpus: &Corpus) -> Vec<u8> {
    if rng.chance(1, 10) {
        return rng.pick(&corpus.strings).clone().into_bytes();
    }
    let mut s = String::new();
    s.push_str(pick_str(rng, &["", "", "-", "+", "--"]));
    let digits = |rng: &mut Rng| -> String {
        let n = match rng.below(4) {
            0 => 0,
            1 => 1 + rng.below(3),
            2 => 1 + rng.below(20),
            _ => 1 + rng.below(400),
        };
        (0..n)
            .map(|_| char::from(b'0' + rng.below(10) as u8))
            .collect()
    };
    s.push_str(&digits(rng));
    if rng.chance(1, 3) {
        s.push('.');
        s.push_str(&digits(rng));
    }
    let suffixes = [
        "", "m", "n", "u", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "e",
        "E", "i", "ki", "Mk", "e+", "e-",
    ];
    s.push_str(pick_str(rng, &suffixes));
    if s.ends_with(['e', 'E', '+', '-']) || rng.chance(1, 8) {
        s.push_str(pick_str(rng, &["", "-", "+"]));
        s.push_str(&digits(rng));
    }
    let mut bytes = s.into_bytes();
    if rng.chance(1, 4) {
        mutate_bytes(rng, &mut bytes);
    }
    bytes
}

fn run_quantity(input: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(input).map_err(|e| e.to_string())?;
    herd_api::quantity::cpu_millis(text);
    herd_api::quantity::value(text);
    let q = herd_api::quantity::Quantity::parse(text).map_err(|e| e.to_string())?;
    q.is_negative();
    for unit in [1, 1000, 1024, 1_000_000_000] {
        q.scaled(unit);
    }
    Ok(())
}

fn gen_oci_manifest(rng: &mut Rng, corpus: &Corpus) -> Vec<u8> {
    let refs = [
        "127.0.0.1:5000/hello:v1",
        "ghcr.io/a/b@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "hello",
        "docker.io/library/x:latest",
        "[::1]:5000/a:b",
        "localhost/a",
        "A/B",
        "a:b:c",
        "a@",
        ":",
        "/",
    ];
    let mut reference = rng.pick(&refs).as_bytes().to_vec();
    if rng.chance(1, 3) {
        mutate_bytes(rng, &mut reference);
        reference.retain(|b| *b != b'\n');
    }
    let mut m = rng.pick(&corpus.manifests).clone();
    if rng.chance(7, 8) {
        mutate_value(rng, corpus, &mut m);
    }
    let mut body = serde_json::to_vec(&m).unwrap_or_default();
    if rng.chance(1, 4) {
        mutate_bytes(rng, &mut body);
    }
    join(&[&reference, &body])
}

fn run_oci_manifest(input: &[u8]) -> Result<(), String> {
    let (reference, body) = split2(input).ok_or("no body")?;
    if let Ok(reference) = std::str::from_utf8(reference) {
        herd_oci_fetch::is_loopback_registry(reference);
        if let Ok(r) = reference.parse::<oci_client::Reference>() {
            herd_oci_fetch::is_loopback_registry(r.resolve_registry());
            r.whole();
        }
    }
    let _ = serde_json::from_slice::<oci_client::config::ConfigFile>(body);
    herd_oci_fetch::inspect_manifest(body).map(|_| ())
}

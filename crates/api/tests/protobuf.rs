//! `herd_api::protobuf::decode` against request bodies captured from kubectl 1.37's generator commands (the `.pb`
//! files), compared with what the same command prints with `--dry-run=client -o json` (the `.json` files, less the
//! `status` that a create ignores).

use std::path::PathBuf;

use herd_api::protobuf::{ProtobufError, decode};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/protobuf")
        .join(name)
}

fn check(name: &str) {
    let body = std::fs::read(fixture(&format!("{name}.pb"))).expect("read the captured body");
    let expected: serde_json::Value = serde_json::from_slice(
        &std::fs::read(fixture(&format!("{name}.json"))).expect("read the expected JSON"),
    )
    .expect("expected JSON parses");
    let decoded = decode(&body).unwrap_or_else(|error| panic!("{name}: {error}"));
    assert_eq!(decoded, expected, "{name}: decoded {decoded:#}");
    // kubectl sends these with fieldValidation=Strict: herd must know every field, and admission must accept them.
    let (api_version, kind) = (decoded["apiVersion"].as_str(), decoded["kind"].as_str());
    let resource =
        herd_api::resources::by_kind(api_version.unwrap_or_default(), kind.unwrap_or_default());
    let resource =
        resource.unwrap_or_else(|| panic!("{name}: herd serves {api_version:?} {kind:?}"));
    assert_eq!(
        herd_api::unknown_fields(resource, &decoded),
        Vec::<String>::new(),
        "{name}"
    );
    let mut object = decoded.clone();
    if resource.namespaced {
        object["metadata"]["namespace"] = "default".into();
    }
    herd_api::admit(resource, object).unwrap_or_else(|error| panic!("{name}: {error}"));
}

#[test]
fn create_configmap_from_literals() {
    check("configmap");
}

#[test]
fn create_configmap_from_a_binary_file_fills_binary_data() {
    check("configmap-binary");
}

#[test]
fn create_secret_generic_encodes_data_as_base64() {
    check("secret");
}

#[test]
fn create_secret_docker_registry_keeps_the_type() {
    check("secret-docker");
}

#[test]
fn create_namespace() {
    check("namespace");
}

#[test]
fn create_deployment_with_image_port_and_replicas() {
    check("deployment");
}

#[test]
fn create_deployment_with_zero_replicas_and_a_command() {
    check("deployment-command");
}

#[test]
fn create_deployment_with_two_images() {
    check("deployment-multi");
}

#[test]
fn create_service_clusterip_with_a_numeric_target_port() {
    check("service");
}

#[test]
fn create_service_nodeport_keeps_the_node_port() {
    check("service-nodeport");
}

#[test]
fn create_serviceaccount() {
    check("serviceaccount");
}

#[test]
fn create_job_with_a_command() {
    check("job");
}

#[test]
fn create_poddisruptionbudget_with_min_available() {
    check("pdb-min-available");
}

#[test]
fn create_poddisruptionbudget_with_a_percentage_max_unavailable() {
    check("pdb-max-unavailable");
}

#[test]
fn a_kind_without_a_schema_is_unsupported() {
    // The Job body with its typeMeta's kind renamed to Widget, a kind herd has no schema for.
    let mut body = std::fs::read(fixture("job.pb")).expect("read the captured body");
    let at = body
        .windows(5)
        .position(|w| w == b"\x12\x03Job")
        .expect("the kind in typeMeta");
    body.splice(at..at + 5, *b"\x12\x06Widget");
    body[5] += 3; // typeMeta's length
    assert_eq!(
        decode(&body),
        Err(ProtobufError::UnsupportedKind(
            "batch/v1, Kind=Widget".to_owned()
        ))
    );
}

#[test]
fn a_body_cut_inside_the_object_is_truncated_and_no_cut_panics() {
    let body = std::fs::read(fixture("deployment.pb")).expect("read the captured body");
    // magic (4), typeMeta (tag, length, bytes), then raw's tag; the envelope ends with empty fields 3 and 4 (4 bytes).
    let raw_starts = 4 + 2 + usize::from(body[5]) + 1;
    let raw_ends = body.len() - 4;
    for len in 0..body.len() {
        let decoded = decode(&body[..len]);
        if (raw_starts..raw_ends).contains(&len) {
            assert!(
                matches!(decoded, Err(ProtobufError::Truncated(_))),
                "cut at {len}: {decoded:?}"
            );
        }
    }
    assert!(matches!(
        decode(&body[..2]),
        Err(ProtobufError::NotKubernetesProtobuf)
    ));
}

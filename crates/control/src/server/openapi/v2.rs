//! `GET /openapi/v2`: a Swagger 2.0 document without definitions.
//!
//! kubectl still reads v2 in one place: with `--validate=strict` (the default) it validates the items of a
//! `kind: List` manifest (`kubectl get -o yaml | kubectl apply -f -`) on the client, fetching v2 as protobuf
//! (`application/com.github.proto-openapi.spec.v2@v1.0+protobuf`, gnostic's `openapi_v2.Document`). A
//! document without definitions makes it skip that check; the server still validates every item strictly
//! (kubectl sends `fieldValidation=Strict` with each). Everything else kubectl needs is in v3.

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::server::discovery::KUBERNETES_VERSION;

/// The media type clients ask for (gnostic's protobuf encoding of a Swagger 2.0 document); `@` is not a
/// valid media type character, so responses say [`PROTOBUF_V2`], as kube-openapi's handler does.
const PROTOBUF_V2_REQUESTED: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";
const PROTOBUF_V2: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// `GET /openapi/v2`: protobuf when the client asks for it, JSON otherwise.
pub async fn v2(headers: HeaderMap) -> Response {
    let wants_protobuf = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains(PROTOBUF_V2_REQUESTED) || a.contains(PROTOBUF_V2));
    let (major, minor) = KUBERNETES_VERSION;
    let version = format!("v{major}.{minor}.0");
    let mut resp = if wants_protobuf {
        (
            [(header::CONTENT_TYPE, PROTOBUF_V2)],
            protobuf_document("Kubernetes", &version),
        )
            .into_response()
    } else {
        axum::Json(json!({
            "swagger": "2.0",
            "info": {"title": "Kubernetes", "version": version},
            "paths": {},
        }))
        .into_response()
    };
    resp.headers_mut()
        .insert(header::VARY, HeaderValue::from_static("Accept"));
    resp
}

/// `openapi_v2.Document{swagger: "2.0", info: {title, version}, paths: {}}` in protobuf wire format:
/// `swagger` is field 1, `info` field 2 (`title` 1, `version` 2), `paths` field 8.
fn protobuf_document(title: &str, version: &str) -> Vec<u8> {
    let mut info = Vec::new();
    length_delimited(&mut info, 1, title.as_bytes());
    length_delimited(&mut info, 2, version.as_bytes());
    let mut doc = Vec::new();
    length_delimited(&mut doc, 1, b"2.0");
    length_delimited(&mut doc, 2, &info);
    length_delimited(&mut doc, 8, &[]);
    doc
}

/// Appends field `number` with wire type 2 (length-delimited).
fn length_delimited(out: &mut Vec<u8>, number: u64, bytes: &[u8]) {
    varint(out, (number << 3) | 2);
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8 & 0x7f) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protobuf_document_is_the_gnostic_wire_format() {
        let doc = protobuf_document("K", "v1");
        // swagger = "2.0"; info = {title: "K", version: "v1"} (7 bytes); paths = {}.
        let expected: &[u8] = &[
            0x0a, 3, b'2', b'.', b'0', //
            0x12, 7, 0x0a, 1, b'K', 0x12, 2, b'v', b'1', //
            0x42, 0,
        ];
        assert_eq!(doc, expected);
        let mut long = Vec::new();
        varint(&mut long, 300);
        assert_eq!(long, [0xac, 0x02]);
    }

    #[tokio::test]
    async fn protobuf_only_when_asked_for() {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT,
            HeaderValue::from_static(PROTOBUF_V2_REQUESTED),
        );
        assert_eq!(v2(h).await.headers()[header::CONTENT_TYPE], PROTOBUF_V2);
        let json = v2(HeaderMap::new()).await;
        assert_eq!(json.headers()[header::CONTENT_TYPE], "application/json");
    }
}

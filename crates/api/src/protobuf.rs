//! Decoding of Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`) into the JSON form of the
//! same object, which is what kubectl's generator commands (`kubectl create configmap|secret|namespace|deployment|
//! service|serviceaccount|job|poddisruptionbudget …`) send.
//!
//! A body is the magic `k8s\0` followed by a `runtime.Unknown` envelope whose `typeMeta` names the kind and whose
//! `raw` bytes are the object's message. The message is read with a small wire reader and turned into JSON by the
//! field table in [`schema`], which covers what those generators fill in; fields it does not list are skipped.
//! Go's protobuf encoder writes every non-pointer field even when empty, so empty scalars are dropped the way Go's
//! `omitempty` drops them from JSON, and a zero `meta.v1.Time` is left out.

mod schema;

use base64::Engine as _;
use serde_json::{Map, Value};

use schema::{Field, Kind};

/// The four bytes every Kubernetes protobuf body starts with.
const MAGIC: &[u8] = b"k8s\0";

/// The content type of the `raw` bytes the envelope may name (empty means the same).
const PROTOBUF_CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// Why a protobuf body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtobufError {
    /// The body does not start with `k8s\0`.
    #[error(
        "the body is not a Kubernetes protobuf object (it does not start with the k8s magic number)"
    )]
    NotKubernetesProtobuf,
    /// The body ends in the middle of the named element.
    #[error("the protobuf body is truncated in the middle of a {0}")]
    Truncated(&'static str),
    /// The envelope names a kind (`apiVersion, Kind=kind`) this decoder has no schema for.
    #[error("decoding protobuf is not supported for {0}")]
    UnsupportedKind(String),
    /// The bytes are not valid protobuf for the schema.
    #[error("the protobuf body is malformed: {0}")]
    Malformed(String),
}

/// Decodes a Kubernetes protobuf-encoded object (the `k8s\0` magic + `runtime.Unknown` envelope) into its JSON form,
/// with `apiVersion` and `kind` from the envelope's `typeMeta`, as kube-apiserver would accept it.
///
/// # Errors
///
/// [`ProtobufError`] when the body is not a Kubernetes protobuf object, is cut short or malformed, or carries a kind
/// herd cannot decode from protobuf.
pub fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    let envelope = body
        .strip_prefix(MAGIC)
        .ok_or(ProtobufError::NotKubernetesProtobuf)?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    let (mut content_encoding, mut content_type) = (String::new(), String::new());
    let mut reader = Reader(envelope);
    while let Some((tag, wire)) = reader.next_field()? {
        match tag {
            1 => {
                let mut type_meta = Reader(wire.bytes("runtime.Unknown typeMeta")?);
                while let Some((tag, wire)) = type_meta.next_field()? {
                    match tag {
                        1 => api_version = wire.string("typeMeta apiVersion")?,
                        2 => kind = wire.string("typeMeta kind")?,
                        _ => {}
                    }
                }
            }
            2 => raw = wire.bytes("runtime.Unknown raw")?,
            3 => content_encoding = wire.string("runtime.Unknown contentEncoding")?,
            4 => content_type = wire.string("runtime.Unknown contentType")?,
            _ => {}
        }
    }
    if !content_encoding.is_empty() {
        return Err(ProtobufError::Malformed(format!(
            "content encoding {content_encoding:?} is not supported"
        )));
    }
    if !content_type.is_empty() && content_type != PROTOBUF_CONTENT_TYPE {
        return Err(ProtobufError::Malformed(format!(
            "the object is {content_type:?}, not protobuf"
        )));
    }
    let fields = schema::root(&api_version, &kind)
        .ok_or_else(|| ProtobufError::UnsupportedKind(format!("{api_version}, Kind={kind}")))?;
    let mut object = Map::new();
    object.insert("apiVersion".to_owned(), Value::String(api_version));
    object.insert("kind".to_owned(), Value::String(kind));
    decode_message_into(raw, fields, &mut object)?;
    Ok(Value::Object(object))
}

/// Decodes the message in `buf` into `out`, one schema field at a time.
fn decode_message_into(
    buf: &[u8],
    fields: &[Field],
    out: &mut Map<String, Value>,
) -> Result<(), ProtobufError> {
    let mut reader = Reader(buf);
    while let Some((tag, wire)) = reader.next_field()? {
        if let Some(field) = fields.iter().find(|field| field.tag == tag) {
            decode_field(field, wire, out)?;
        }
    }
    Ok(())
}

fn decode_field(
    field: &Field,
    wire: Wire<'_>,
    out: &mut Map<String, Value>,
) -> Result<(), ProtobufError> {
    let json = field.json;
    match field.kind {
        Kind::Inline(inner) => return decode_message_into(wire.bytes(json)?, inner, out),
        Kind::MapStr | Kind::MapBytes | Kind::MapQuantity => {
            let (key, value) = map_entry(field, wire.bytes(json)?)?;
            if let Value::Object(map) = out.entry(json).or_insert_with(|| Value::Object(Map::new()))
            {
                map.insert(key, value);
            }
            return Ok(());
        }
        _ => {}
    }
    let Some(value) = value_of(field.kind, json, wire)? else {
        return Ok(());
    };
    if field.repeated {
        if let Value::Array(items) = out.entry(json).or_insert_with(|| Value::Array(Vec::new())) {
            items.push(value);
        }
    } else if field.keep_zero || !is_zero(&value) {
        out.insert(json.to_owned(), value);
    }
    Ok(())
}

/// The JSON value of a non-map field, or `None` when it is left out (a zero time).
fn value_of(kind: Kind, json: &str, wire: Wire<'_>) -> Result<Option<Value>, ProtobufError> {
    Ok(Some(match kind {
        Kind::Str => Value::String(wire.string(json)?),
        Kind::Bytes => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(wire.bytes(json)?))
        }
        Kind::Int => Value::from(wire.int(json)?),
        Kind::Bool => Value::Bool(wire.int(json)? != 0),
        Kind::Msg(inner) => {
            let mut object = Map::new();
            decode_message_into(wire.bytes(json)?, inner, &mut object)?;
            Value::Object(object)
        }
        Kind::IntOrString => int_or_string(wire.bytes(json)?)?,
        Kind::Quantity => Value::String(quantity(wire.bytes(json)?)?),
        Kind::Time => return time(wire.bytes(json)?),
        Kind::Inline(_) | Kind::MapStr | Kind::MapBytes | Kind::MapQuantity => {
            return Err(ProtobufError::Malformed(format!(
                "{json} is not a plain field"
            )));
        }
    }))
}

/// What Go's `omitempty` leaves out of JSON.
fn is_zero(value: &Value) -> bool {
    match value {
        Value::String(text) => text.is_empty(),
        Value::Number(number) => number.as_i64() == Some(0),
        Value::Bool(flag) => !flag,
        _ => false,
    }
}

/// One `map<string, V>` entry: a message with the key in field 1 and the value in field 2.
fn map_entry(field: &Field, buf: &[u8]) -> Result<(String, Value), ProtobufError> {
    let (mut key, mut value) = (String::new(), None);
    let mut reader = Reader(buf);
    while let Some((tag, wire)) = reader.next_field()? {
        match tag {
            1 => key = wire.string(field.json)?,
            2 => {
                value = Some(match field.kind {
                    Kind::MapBytes => Value::String(
                        base64::engine::general_purpose::STANDARD.encode(wire.bytes(field.json)?),
                    ),
                    Kind::MapQuantity => Value::String(quantity(wire.bytes(field.json)?)?),
                    _ => Value::String(wire.string(field.json)?),
                });
            }
            _ => {}
        }
    }
    Ok((key, value.unwrap_or_else(|| Value::String(String::new()))))
}

/// `intstr.IntOrString { 1: type (0 int, 1 string), 2: intVal, 3: strVal }`.
fn int_or_string(buf: &[u8]) -> Result<Value, ProtobufError> {
    let (mut is_string, mut int_val, mut str_val) = (false, 0, String::new());
    let mut reader = Reader(buf);
    while let Some((tag, wire)) = reader.next_field()? {
        match tag {
            1 => is_string = wire.int("IntOrString type")? == 1,
            2 => int_val = wire.int("IntOrString intVal")?,
            3 => str_val = wire.string("IntOrString strVal")?,
            _ => {}
        }
    }
    Ok(if is_string {
        Value::String(str_val)
    } else {
        Value::from(int_val)
    })
}

/// `resource.Quantity { 1: string }`.
fn quantity(buf: &[u8]) -> Result<String, ProtobufError> {
    let mut text = String::new();
    let mut reader = Reader(buf);
    while let Some((tag, wire)) = reader.next_field()? {
        if tag == 1 {
            text = wire.string("Quantity")?;
        }
    }
    Ok(text)
}

/// `meta.v1.Time { 1: seconds, 2: nanos }` as RFC 3339 at second precision (as Go marshals it); `None` when zero.
fn time(buf: &[u8]) -> Result<Option<Value>, ProtobufError> {
    let (mut seconds, mut nanos) = (0, 0);
    let mut reader = Reader(buf);
    while let Some((tag, wire)) = reader.next_field()? {
        match tag {
            1 => seconds = wire.int("Time seconds")?,
            2 => nanos = wire.int("Time nanos")?,
            _ => {}
        }
    }
    if seconds == 0 && nanos == 0 {
        return Ok(None);
    }
    let at = jiff::Timestamp::from_second(seconds)
        .map_err(|error| ProtobufError::Malformed(format!("time out of range: {error}")))?;
    Ok(Some(Value::String(
        at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
    )))
}

/// A field value as the wire carries it.
#[derive(Debug, Clone, Copy)]
enum Wire<'a> {
    Varint(u64),
    Fixed64,
    Bytes(&'a [u8]),
    Fixed32,
}

impl<'a> Wire<'a> {
    fn bytes(self, field: &str) -> Result<&'a [u8], ProtobufError> {
        match self {
            Wire::Bytes(bytes) => Ok(bytes),
            other => Err(wrong_wire_type(field, other)),
        }
    }

    fn string(self, field: &str) -> Result<String, ProtobufError> {
        String::from_utf8(self.bytes(field)?.to_vec())
            .map_err(|_| ProtobufError::Malformed(format!("{field} is not valid UTF-8")))
    }

    /// A varint read as a signed 64-bit integer (Go encodes a negative int32 as its 64-bit two's complement).
    fn int(self, field: &str) -> Result<i64, ProtobufError> {
        match self {
            Wire::Varint(value) => Ok(i64::from_le_bytes(value.to_le_bytes())),
            other => Err(wrong_wire_type(field, other)),
        }
    }
}

fn wrong_wire_type(field: &str, wire: Wire<'_>) -> ProtobufError {
    ProtobufError::Malformed(format!("{field} has the wrong wire type ({wire:?})"))
}

/// Reads `(field number, value)` pairs off a protobuf message.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn next_field(&mut self) -> Result<Option<(u32, Wire<'a>)>, ProtobufError> {
        if self.0.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let tag = u32::try_from(key >> 3)
            .ok()
            .filter(|tag| *tag != 0)
            .ok_or_else(|| {
                ProtobufError::Malformed(format!("invalid field number {}", key >> 3))
            })?;
        let wire = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => {
                self.take(8, "64-bit field")?;
                Wire::Fixed64
            }
            2 => {
                let len = self.varint()?;
                let len = usize::try_from(len)
                    .map_err(|_| ProtobufError::Truncated("length-delimited field"))?;
                Wire::Bytes(self.take(len, "length-delimited field")?)
            }
            5 => {
                self.take(4, "32-bit field")?;
                Wire::Fixed32
            }
            other => {
                return Err(ProtobufError::Malformed(format!(
                    "unsupported wire type {other}"
                )));
            }
        };
        Ok(Some((tag, wire)))
    }

    fn varint(&mut self) -> Result<u64, ProtobufError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self
                .0
                .split_first()
                .ok_or(ProtobufError::Truncated("varint"))?;
            self.0 = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(ProtobufError::Malformed(
            "varint longer than 10 bytes".to_owned(),
        ))
    }

    fn take(&mut self, len: usize, what: &'static str) -> Result<&'a [u8], ProtobufError> {
        if self.0.len() < len {
            return Err(ProtobufError::Truncated(what));
        }
        let (taken, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(taken)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// A length-delimited field.
    fn bytes(tag: u32, value: &[u8]) -> Vec<u8> {
        let mut out = varint(u64::from(tag) << 3 | 2);
        out.extend(varint(value.len() as u64));
        out.extend_from_slice(value);
        out
    }

    fn int(tag: u32, value: i64) -> Vec<u8> {
        let mut out = varint(u64::from(tag) << 3);
        out.extend(varint(u64::from_le_bytes(value.to_le_bytes())));
        out
    }

    fn varint(mut value: u64) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                out.push(byte);
                return out;
            }
            out.push(byte | 0x80);
        }
    }

    fn entry(key: &str, value: &[u8]) -> Vec<u8> {
        [bytes(1, key.as_bytes()), bytes(2, value)].concat()
    }

    fn object(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        let type_meta = [bytes(1, api_version.as_bytes()), bytes(2, kind.as_bytes())].concat();
        [
            MAGIC.to_vec(),
            bytes(1, &type_meta),
            bytes(2, raw),
            bytes(3, b""),
            bytes(4, b""),
        ]
        .concat()
    }

    /// A pod as `kubectl run p1 --image=busybox --env=FOO=bar --port=9000 --labels=app=p1` builds it, plus the
    /// field kinds the generators never fill: a creation time, a named target port, quantities, a negative int and
    /// fields (fixed32, fixed64, an unknown message) that herd does not model.
    #[test]
    fn decodes_a_pod_with_every_field_kind() {
        let time = [int(1, 1_700_000_000), int(2, 0)].concat();
        let meta = [
            bytes(1, b"p1"),
            bytes(3, b""),
            int(7, 0),
            bytes(8, &time),
            bytes(11, &entry("app", b"p1")),
            vec![0x7d, 1, 2, 3, 4], // field 15, fixed32: unknown
        ]
        .concat();
        let env = [bytes(1, b"FOO"), bytes(2, b"bar")].concat();
        let field_ref = [bytes(1, b"v1"), bytes(2, b"status.podIP")].concat();
        let env_from_field = [bytes(1, b"IP"), bytes(3, &bytes(1, &field_ref))].concat();
        let port = [int(3, 9000), bytes(4, b"TCP")].concat();
        let resources = [
            bytes(1, &entry("cpu", &bytes(1, b"500m"))),
            bytes(2, &entry("memory", &bytes(1, b"64Mi"))),
        ];
        let container = [
            bytes(1, b"p1"),
            bytes(2, b"busybox"),
            bytes(3, b"sh"),
            bytes(3, b""),
            bytes(6, &port),
            bytes(7, &env),
            bytes(7, &env_from_field),
            bytes(8, &resources.concat()),
            int(16, 0),
            int(18, 1),
            vec![0x99, 0x06, 1, 2, 3, 4, 5, 6, 7, 8], // field 99, fixed64: unknown
        ]
        .concat();
        let spec = [
            bytes(2, &container),
            bytes(3, b"Always"),
            int(4, -1),
            int(11, 0),
            int(30, 0),
            bytes(99, b"unknown message"),
        ]
        .concat();
        let body = object("v1", "Pod", &[bytes(1, &meta), bytes(2, &spec)].concat());
        let expected = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p1", "creationTimestamp": "2023-11-14T22:13:20Z", "labels": {"app": "p1"}},
            "spec": {
                "containers": [{
                    "name": "p1", "image": "busybox", "command": ["sh", ""],
                    "ports": [{"containerPort": 9000, "protocol": "TCP"}],
                    "env": [
                        {"name": "FOO", "value": "bar"},
                        {"name": "IP", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "status.podIP"}}},
                    ],
                    "resources": {"limits": {"cpu": "500m"}, "requests": {"memory": "64Mi"}},
                    "tty": true,
                }],
                "restartPolicy": "Always",
                "terminationGracePeriodSeconds": -1,
                "enableServiceLinks": false,
            },
        });
        assert_eq!(decode(&body), Ok(expected));
    }

    #[test]
    fn a_named_target_port_is_a_string_and_inline_structs_merge() {
        let target_port = [int(1, 1), bytes(3, b"http")].concat();
        let service_port = [int(3, 80), bytes(4, &target_port)].concat();
        let service = object("v1", "Service", &bytes(2, &bytes(1, &service_port)));
        assert_eq!(
            decode(&service).map(|object| object["spec"]["ports"].clone()),
            Ok(json!([{"port": 80, "targetPort": "http"}]))
        );

        let volume = [
            bytes(1, b"config"),
            bytes(2, &bytes(19, &bytes(1, &bytes(1, b"settings")))),
        ]
        .concat();
        let pod = object("v1", "Pod", &bytes(2, &bytes(1, &volume)));
        assert_eq!(
            decode(&pod).map(|object| object["spec"]["volumes"].clone()),
            Ok(json!([{"name": "config", "configMap": {"name": "settings"}}]))
        );
    }

    /// What `kubectl create rolebinding b --clusterrole=view --user=jane --serviceaccount=ns:x` and
    /// `kubectl create role r --verb=get --resource=pods` send: the RBAC messages' fields.
    #[test]
    fn decodes_the_rbac_kinds_kubectl_creates() {
        let meta = bytes(1, &bytes(1, b"b"));
        let role_ref = [
            bytes(1, b"rbac.authorization.k8s.io"),
            bytes(2, b"ClusterRole"),
            bytes(3, b"view"),
        ]
        .concat();
        let user = [
            bytes(1, b"User"),
            bytes(2, b"rbac.authorization.k8s.io"),
            bytes(3, b"jane"),
        ]
        .concat();
        let sa = [
            bytes(1, b"ServiceAccount"),
            bytes(2, b""),
            bytes(3, b"x"),
            bytes(4, b"ns"),
        ]
        .concat();
        let body = [meta, bytes(2, &user), bytes(2, &sa), bytes(3, &role_ref)].concat();
        assert_eq!(
            decode(&object(
                "rbac.authorization.k8s.io/v1",
                "RoleBinding",
                &body
            )),
            Ok(
                json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": "b"},
                "subjects": [
                    {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": "jane"},
                    {"kind": "ServiceAccount", "name": "x", "namespace": "ns"}],
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "view"}})
            )
        );
        let rule = [
            bytes(1, b"get"),
            bytes(2, b""),
            bytes(3, b"pods"),
            bytes(5, b"/healthz"),
        ]
        .concat();
        let selector = bytes(1, &bytes(1, &entry("team", b"a")));
        let role = [
            bytes(1, &bytes(1, b"c")),
            bytes(2, &rule),
            bytes(3, &selector),
        ]
        .concat();
        let decoded = decode(&object(
            "rbac.authorization.k8s.io/v1",
            "ClusterRole",
            &role,
        ))
        .unwrap();
        assert_eq!(
            (&decoded["rules"], &decoded["aggregationRule"]),
            (
                &json!([{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"],
                    "nonResourceURLs": ["/healthz"]}]),
                &json!({"clusterRoleSelectors": [{"matchLabels": {"team": "a"}}]})
            )
        );
    }

    #[test]
    fn rejects_what_is_not_a_decodable_kubernetes_object() {
        assert_eq!(
            decode(b"{\"kind\":\"Pod\"}"),
            Err(ProtobufError::NotKubernetesProtobuf)
        );
        assert_eq!(
            decode(&object("v1", "Binding", b"")),
            Err(ProtobufError::UnsupportedKind(
                "v1, Kind=Binding".to_owned()
            ))
        );
        // metadata (field 1) as a varint instead of a message
        assert!(matches!(
            decode(&object("v1", "Pod", &int(1, 5))),
            Err(ProtobufError::Malformed(_))
        ));
        // a name that is not UTF-8
        let bad_name = bytes(1, &bytes(1, &[0xff, 0xfe]));
        assert!(matches!(
            decode(&object("v1", "Pod", &bad_name)),
            Err(ProtobufError::Malformed(_))
        ));
        // wire type 3 (a group)
        assert!(matches!(
            decode(&object("v1", "Pod", &[0x0b])),
            Err(ProtobufError::Malformed(_))
        ));
        // an eleven-byte varint
        assert!(matches!(
            decode(&object("v1", "Pod", &[0x80; 11])),
            Err(ProtobufError::Malformed(_))
        ));
        // a gzip-encoded object
        let gzip = [
            MAGIC.to_vec(),
            bytes(1, &bytes(2, b"Pod")),
            bytes(3, b"gzip"),
        ]
        .concat();
        assert!(matches!(decode(&gzip), Err(ProtobufError::Malformed(_))));
    }
}

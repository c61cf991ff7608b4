//! The `scale` subresource of a custom resource (apiextensions-apiserver's `scaleFromCustomResource` and
//! `scaleUpdater`): the CRD names where the object keeps its desired replicas (`specReplicasPath`), its
//! observed replicas (`statusReplicasPath`) and optionally its selector (`labelSelectorPath`), and the
//! autoscaling/v1 `Scale` is read from and written to those paths.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceSubresourceScale;
use serde_json::{Map, Value, json};

/// Why a custom object's replicas cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScaleError {
    /// The value at a replicas path is no integer (kube's `… accessor error: … expected int64`).
    #[error("{path} accessor error: {value} is of the type {type_}, expected int64")]
    NotAnInteger {
        path: String,
        value: String,
        type_: &'static str,
    },
    /// Something on the way to the path is not an object.
    #[error(
        "{path} accessor error: {value} is of the type {type_}, expected map[string]interface{{}}"
    )]
    NotAnObject {
        path: String,
        value: String,
        type_: &'static str,
    },
}

/// Where a CRD version keeps the numbers of its Scale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScalePaths {
    /// The text of `specReplicasPath` (`.spec.replicas`) and its field names.
    pub spec_replicas: String,
    spec: Vec<String>,
    pub status_replicas: String,
    status: Vec<String>,
    pub label_selector: Option<String>,
    selector: Option<Vec<String>>,
}

fn fields(path: &str) -> Vec<String> {
    path.trim_start_matches('.')
        .split('.')
        .filter(|p| !p.is_empty())
        .map(String::from)
        .collect()
}

fn go_type(v: &Value) -> &'static str {
    match v {
        Value::String(_) => "string",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float64",
        Value::Number(_) => "int64",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
        Value::Null => "<nil>",
    }
}

impl ScalePaths {
    pub fn new(scale: &CustomResourceSubresourceScale) -> Self {
        let selector = scale.label_selector_path.clone().filter(|p| !p.is_empty());
        Self {
            spec: fields(&scale.spec_replicas_path),
            spec_replicas: scale.spec_replicas_path.clone(),
            status: fields(&scale.status_replicas_path),
            status_replicas: scale.status_replicas_path.clone(),
            selector: selector.as_deref().map(fields),
            label_selector: selector,
        }
    }

    /// The integer at `path`, 0 when absent (kube's `NestedInt64` with `found == false`).
    fn int_at(obj: &Value, path: &[String], text: &str) -> Result<i64, ScaleError> {
        let mut v = obj;
        for (i, key) in path.iter().enumerate() {
            match v {
                Value::Object(m) => match m.get(key) {
                    Some(next) => v = next,
                    None => return Ok(0),
                },
                other => {
                    return Err(ScaleError::NotAnObject {
                        path: format!(".{}", path[..i].join(".")),
                        value: other.to_string(),
                        type_: go_type(other),
                    });
                }
            }
        }
        match v {
            Value::Null => Ok(0),
            Value::Number(n) if n.is_i64() => Ok(n.as_i64().unwrap_or_default()),
            other => Err(ScaleError::NotAnInteger {
                path: text.to_string(),
                value: other.to_string(),
                type_: go_type(other),
            }),
        }
    }

    /// The autoscaling/v1 `Scale` of `obj`.
    ///
    /// # Errors
    /// [`ScaleError`] when a replicas path holds something else than an integer.
    pub fn scale_of(&self, obj: &Value) -> Result<Value, ScaleError> {
        let spec = Self::int_at(obj, &self.spec, &self.spec_replicas)?;
        let status = Self::int_at(obj, &self.status, &self.status_replicas)?;
        let md = &obj["metadata"];
        let mut status_obj = json!({ "replicas": status });
        if let Some(path) = &self.selector {
            let selector = path
                .iter()
                .try_fold(obj, |v, k| v.get(k))
                .and_then(Value::as_str);
            if let Some(s) = selector {
                status_obj["selector"] = json!(s);
            }
        }
        let mut meta = Map::new();
        for key in [
            "name",
            "namespace",
            "uid",
            "resourceVersion",
            "creationTimestamp",
        ] {
            if let Some(v) = md.get(key).filter(|v| !v.is_null()) {
                meta.insert(key.into(), v.clone());
            }
        }
        Ok(json!({
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": meta,
            "spec": { "replicas": spec },
            "status": status_obj,
        }))
    }

    /// Writes `replicas` at the spec replicas path of `obj`, creating the objects on the way (kube's
    /// `SetNestedField`).
    ///
    /// # Errors
    /// [`ScaleError::NotAnObject`] when something on the way is not an object.
    pub fn set_replicas(&self, obj: &mut Value, replicas: i64) -> Result<(), ScaleError> {
        let (last, parents) = match self.spec.split_last() {
            Some(x) => x,
            None => return Ok(()),
        };
        let mut v = obj;
        for (i, key) in parents.iter().enumerate() {
            let Value::Object(m) = v else {
                return Err(ScaleError::NotAnObject {
                    path: format!(".{}", self.spec[..i].join(".")),
                    value: v.to_string(),
                    type_: go_type(v),
                });
            };
            let next = m.entry(key.clone()).or_insert_with(|| json!({}));
            if next.is_null() {
                *next = json!({});
            }
            v = next;
        }
        match v {
            Value::Object(m) => {
                m.insert(last.clone(), json!(replicas));
                Ok(())
            }
            other => Err(ScaleError::NotAnObject {
                path: format!(".{}", parents.join(".")),
                value: other.to_string(),
                type_: go_type(other),
            }),
        }
    }
}

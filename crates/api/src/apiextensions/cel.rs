//! `x-kubernetes-validations`: CEL rules compiled once per schema and evaluated on custom objects as
//! kube-apiserver's `pkg/apiserver/schema/cel` does — `self` is the value at the rule's node, `oldSelf`
//! the value it replaces on an update (a rule that names `oldSelf` is a *transition rule* and runs only
//! where an old value exists and correlates: object fields by name, map-list items by key), a rule that is
//! not `true` is a cause at the node (or at its `fieldPath`) with its `message`, its `messageExpression`'s
//! result or `failed rule: <rule>`, of its `reason`'s type.
//!
//! The interpreter is the `cel` crate's. It parses but does not type-check, so a rule naming a field the
//! schema lacks fails when it runs (`no such key: x evaluating rule: …`), not when the CRD is created;
//! syntax errors are refused at creation as kube refuses them.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use cel::extractors::This;
use cel::objects::{Key, Map};
use cel::{Context, Env, Program, Value as CelValue, extensions};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::ValidationRule;
use serde_json::Value;

use super::structural::{AdditionalProperties, ListKind, Schema};
use crate::validation::Cause;

/// One compiled `x-kubernetes-validations` entry.
pub struct Rule {
    pub rule: String,
    program: Program,
    message: Option<String>,
    message_expression: Option<Program>,
    /// `fieldPath` without its leading dot (`spec.replicas` below the node), if given.
    field_path: Option<String>,
    reason: Option<String>,
    uses_old_self: bool,
    optional_old_self: bool,
}

impl std::fmt::Debug for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rule")
            .field("rule", &self.rule)
            .finish_non_exhaustive()
    }
}

/// Why a rule was refused when its CRD was created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleError {
    /// The rule does not parse: kube's `compilation failed: ERROR: <input>:1:6: …`.
    Rule(String),
    /// The messageExpression does not parse.
    MessageExpression(String),
}

impl Rule {
    /// Compiles a rule and its message expression.
    ///
    /// # Errors
    /// [`RuleError`] with kube's `compilation failed: …` detail when either does not parse.
    pub fn compile(r: &ValidationRule) -> Result<Self, RuleError> {
        let program = env()
            .compile(&r.rule)
            .map_err(|e| RuleError::Rule(format!("compilation failed: {e}")))?;
        let message_expression = match r.message_expression.as_deref().filter(|m| !m.is_empty()) {
            Some(m) => Some(env().compile(m).map_err(|e| {
                RuleError::MessageExpression(format!("messageExpression compilation failed: {e}"))
            })?),
            None => None,
        };
        let uses_old_self = program.references().has_variable("oldSelf");
        Ok(Self {
            rule: r.rule.clone(),
            program,
            message: r.message.clone().filter(|m| !m.is_empty()),
            message_expression,
            field_path: r
                .field_path
                .as_deref()
                .filter(|p| !p.is_empty())
                .map(|p| p.trim_start_matches('.').to_string()),
            reason: r.reason.clone(),
            uses_old_self,
            optional_old_self: r.optional_old_self.unwrap_or(false),
        })
    }

    /// The compiled rule.
    pub(crate) fn program(&self) -> &Program {
        &self.program
    }

    /// Whether the rule names `oldSelf` (a transition rule).
    pub fn uses_old_self(&self) -> bool {
        self.uses_old_self
    }

    /// kube's `ruleErrorString`: the message if there is one, else the rule.
    fn error_string(&self) -> &str {
        self.message.as_deref().map_or(self.rule.trim(), str::trim)
    }
}

/// Evaluates every rule of `schema` and below on `value` (the new object) at `path`, with `old` the value
/// it replaces when it correlates; appends a cause per failed rule.
pub fn validate(
    schema: &Schema,
    path: &str,
    value: &Value,
    old: Option<&Value>,
    causes: &mut Vec<Cause>,
) {
    causes.extend(
        validate_marked(schema, path, value, old)
            .into_iter()
            .map(|(c, _)| c),
    );
}

/// [`validate`], each cause marked `true` when it comes from a transition rule (one naming `oldSelf`).
pub fn validate_marked(
    schema: &Schema,
    path: &str,
    value: &Value,
    old: Option<&Value>,
) -> Vec<(Cause, bool)> {
    let base = library();
    let mut found = Vec::new();
    walk(&base, schema, path, value, old, &mut found);
    found
}

/// The CEL environment of every rule: the standard library, the crate's `strings`, `lists`, `math` and
/// encoder extensions (kube's strings, lists, math and base64 libraries), built once.
fn env() -> &'static Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Env::stdlib();
        for ext in [
            extensions::strings as fn(&mut Env) -> Result<(), cel::DeclarationError>,
            extensions::lists,
            extensions::math,
            extensions::encoders,
        ] {
            // Each extension declares names of its own; a clash would be the crate's bug.
            let _ = env.add_extension(ext);
        }
        Arc::new(env)
    })
}

/// A root context of [`env`] with the functions of kube's libraries that the crate lacks: lists'
/// `isSorted` and `sum`, regex's `find` and `findAll`.
fn library() -> Context<'static, 'static> {
    let mut ctx = Context::with_env(Arc::clone(env()));
    let _ = ctx.add_function("isSorted", |This(list): This<Arc<Vec<CelValue>>>| {
        list.windows(2).all(|w| {
            w[0].partial_cmp(&w[1])
                .is_some_and(|o| o != std::cmp::Ordering::Greater)
        })
    });
    let _ = ctx.add_function("sum", |This(list): This<Arc<Vec<CelValue>>>| {
        if list.iter().any(|v| matches!(v, CelValue::Float(_))) {
            CelValue::Float(
                list.iter()
                    .map(|v| match v {
                        CelValue::Float(f) => *f,
                        CelValue::Int(i) => *i as f64,
                        CelValue::UInt(u) => *u as f64,
                        _ => 0.0,
                    })
                    .sum(),
            )
        } else {
            CelValue::Int(
                list.iter()
                    .map(|v| match v {
                        CelValue::Int(i) => *i,
                        CelValue::UInt(u) => *u as i64,
                        _ => 0,
                    })
                    .sum(),
            )
        }
    });
    let _ = ctx.add_function("find", |This(s): This<Arc<String>>, re: Arc<String>| {
        regex::Regex::new(&re)
            .ok()
            .and_then(|r| r.find(&s).map(|m| m.as_str().to_string()))
            .unwrap_or_default()
    });
    let _ = ctx.add_function("findAll", |This(s): This<Arc<String>>, re: Arc<String>| {
        CelValue::List(Arc::new(
            regex::Regex::new(&re)
                .map(|r| {
                    r.find_iter(&s)
                        .map(|m| CelValue::String(Arc::new(m.as_str().to_string())))
                        .collect()
                })
                .unwrap_or_default(),
        ))
    });
    ctx
}

fn walk(
    base: &Context<'_, '_>,
    schema: &Schema,
    path: &str,
    value: &Value,
    old: Option<&Value>,
    causes: &mut Vec<(Cause, bool)>,
) {
    if value.is_null() {
        return;
    }
    if !schema.rules.is_empty() {
        let this = to_cel(value, schema);
        let before = old.map(|o| to_cel(o, schema));
        for rule in &schema.rules {
            evaluate(
                base,
                rule,
                schema,
                path,
                value,
                &this,
                before.as_ref(),
                causes,
            );
        }
    }
    for nested in &schema.all_of {
        walk(base, nested, path, value, old, causes);
    }
    match value {
        Value::Object(fields) => {
            for (key, v) in fields {
                let Some(child) = schema.field(key) else {
                    continue;
                };
                let old_v = old.and_then(|o| o.get(key)).filter(|_| !schema.atomic_map);
                walk(base, child, &join(path, key), v, old_v, causes);
            }
        }
        Value::Array(items) => {
            let Some(item_schema) = schema.items.as_deref() else {
                return;
            };
            for (i, item) in items.iter().enumerate() {
                let old_item = match (&schema.list, old) {
                    (ListKind::Map(keys), Some(Value::Array(olds))) => olds
                        .iter()
                        .find(|o| keys.iter().all(|k| o.get(k) == item.get(k))),
                    _ => None,
                };
                walk(
                    base,
                    item_schema,
                    &format!("{path}[{i}]"),
                    item,
                    old_item,
                    causes,
                );
            }
        }
        _ => {}
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

#[allow(clippy::too_many_arguments)]
fn evaluate(
    base: &Context<'_, '_>,
    rule: &Rule,
    schema: &Schema,
    path: &str,
    value: &Value,
    this: &CelValue,
    old: Option<&CelValue>,
    found: &mut Vec<(Cause, bool)>,
) {
    if rule.uses_old_self && old.is_none() && !rule.optional_old_self {
        return;
    }
    let mut causes = Vec::new();
    let type_name = type_name(schema, value);
    let mut ctx = base.new_inner_scope();
    ctx.add_variable_from_value("self", this.clone());
    if rule.uses_old_self {
        ctx.add_variable_from_value("oldSelf", old.cloned().unwrap_or(CelValue::Null));
    }
    let field = match &rule.field_path {
        Some(p) => join(path, p),
        None => path.to_string(),
    };
    match rule.program.execute(&ctx) {
        Ok(CelValue::Bool(true)) => {}
        Ok(CelValue::Bool(false)) => {
            let detail = rule
                .message_expression
                .as_ref()
                .and_then(|m| match m.execute(&ctx) {
                    Ok(CelValue::String(s)) if !s.trim().is_empty() && !s.contains('\n') => {
                        Some(s.trim().to_string())
                    }
                    _ => None,
                })
                .unwrap_or_else(|| match &rule.message {
                    Some(m) => m.trim().to_string(),
                    None => format!("failed rule: {}", rule.error_string()),
                });
            causes.push(failure(&field, value, &detail, rule.reason.as_deref()));
        }
        Ok(other) => causes.push(Cause::invalid(
            field,
            type_name,
            &format!(
                "rule did not evaluate to a bool: {other:?} evaluating rule: {}",
                rule.error_string()
            ),
        )),
        Err(e) => causes.push(Cause::invalid(
            path,
            type_name,
            &format!(
                "{} evaluating rule: {}",
                runtime_error(&e),
                rule.error_string()
            ),
        )),
    }
    found.extend(causes.into_iter().map(|c| (c, rule.uses_old_self)));
}

/// cel-go's wording of the runtime errors kube users meet most (`no such key: x`).
fn runtime_error(e: &cel::ExecutionError) -> String {
    match e {
        cel::ExecutionError::NoSuchKey(k) => format!("no such key: {k}"),
        cel::ExecutionError::IndexOutOfBounds(i) => format!("index out of bounds: {}", display(i)),
        cel::ExecutionError::DivisionByZero(_) => "division by zero".into(),
        cel::ExecutionError::RemainderByZero(_) => "modulus by zero".into(),
        cel::ExecutionError::Overflow(..) => "integer overflow".into(),
        cel::ExecutionError::NoSuchOverload(_) => "no such overload".into(),
        other => other.to_string(),
    }
}

fn display(v: &CelValue) -> String {
    match v {
        CelValue::Int(i) => i.to_string(),
        CelValue::UInt(u) => u.to_string(),
        CelValue::Float(f) => f.to_string(),
        CelValue::String(s) => s.to_string(),
        other => format!("{other:?}"),
    }
}

/// kube's `fieldErrorForReason`; the value is left out for objects and arrays (`OmitValueType`).
fn failure(field: &str, value: &Value, detail: &str, reason: Option<&str>) -> Cause {
    let shown = match value {
        Value::Object(_) | Value::Array(_) => None,
        other => Some(super::validate::shown(other)),
    };
    match reason {
        Some("FieldValueForbidden") => Cause::forbidden(field, detail),
        Some("FieldValueRequired") => Cause {
            reason: "FieldValueRequired",
            field: field.to_string(),
            message: format!("Required value: {detail}"),
        },
        Some("FieldValueDuplicate") => Cause {
            reason: "FieldValueDuplicate",
            field: field.to_string(),
            message: match shown {
                Some(v) => format!("Duplicate value: {v}"),
                None => "Duplicate value".into(),
            },
        },
        _ => Cause {
            reason: "FieldValueInvalid",
            field: field.to_string(),
            message: match shown {
                Some(v) => format!("Invalid value: {v}: {detail}"),
                None => format!("Invalid value: {detail}"),
            },
        },
    }
}

/// The OpenAPI type kube names a value by in its rule errors (`sts.Type`).
fn type_name(schema: &Schema, value: &Value) -> String {
    if let Some(t) = &schema.type_ {
        return t.clone();
    }
    match value {
        Value::Object(_) => "object",
        Value::Array(_) => "array",
        Value::String(_) => "string",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::Null => "null",
    }
    .into()
}

/// A JSON value as CEL sees it under `schema`: integers as `int`, `type: number` as `double` even when
/// written without a fraction, objects and maps as maps with string keys.
pub fn to_cel(value: &Value, schema: &Schema) -> CelValue {
    match value {
        Value::Null => CelValue::Null,
        Value::Bool(b) => CelValue::Bool(*b),
        Value::Number(n) => {
            if schema.type_.as_deref() == Some("number") || n.is_f64() {
                CelValue::Float(n.as_f64().unwrap_or_default())
            } else if let Some(i) = n.as_i64() {
                CelValue::Int(i)
            } else {
                CelValue::UInt(n.as_u64().unwrap_or_default())
            }
        }
        Value::String(s) => CelValue::String(Arc::new(s.clone())),
        Value::Array(items) => {
            let item = schema.items.as_deref();
            CelValue::List(Arc::new(
                items
                    .iter()
                    .map(|v| to_cel(v, item.unwrap_or(&ANY)))
                    .collect(),
            ))
        }
        Value::Object(fields) => {
            let map: HashMap<Key, CelValue> = fields
                .iter()
                .map(|(k, v)| {
                    let child = schema
                        .properties
                        .get(k)
                        .or(match &schema.additional_properties {
                            Some(AdditionalProperties::Schema(s)) => Some(s.as_ref()),
                            _ => None,
                        });
                    (
                        Key::String(Arc::new(k.clone())),
                        to_cel(v, child.unwrap_or(&ANY)),
                    )
                })
                .collect();
            CelValue::Map(Map { map: Arc::new(map) })
        }
    }
}

/// The schema of values no schema describes (below preserve-unknown-fields).
static ANY: Schema = Schema {
    type_: None,
    format: None,
    description: None,
    nullable: false,
    default: None,
    properties: std::collections::BTreeMap::new(),
    required: Vec::new(),
    items: None,
    additional_properties: None,
    enum_: None,
    maximum: None,
    exclusive_maximum: false,
    minimum: None,
    exclusive_minimum: false,
    multiple_of: None,
    max_length: None,
    min_length: None,
    pattern: None,
    max_items: None,
    min_items: None,
    unique_items: false,
    max_properties: None,
    min_properties: None,
    all_of: Vec::new(),
    any_of: Vec::new(),
    one_of: Vec::new(),
    not: None,
    preserve_unknown_fields: true,
    embedded_resource: false,
    int_or_string: false,
    list: ListKind::Atomic,
    atomic_map: false,
    rules: Vec::new(),
};

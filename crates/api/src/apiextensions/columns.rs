//! `additionalPrinterColumns`: the Table columns of a custom resource (`kubectl get`), as
//! apiextensions-apiserver's `tableconvertor` builds them — `Name`, then each column (or `Age` when the
//! version declares none), each cell the first result of the column's JSONPath (client-go's `jsonpath`:
//! `.spec.replicas`, `.status.conditions[?(@.type=="Ready")].status`, `['a.b']`, `[0]`, `[*]`, `..x`)
//! converted by the column's type. A `date` cell is a timestamp the Table code prints as kube's age.

use jiff::Timestamp;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceColumnDefinition;
use serde_json::{Value, json};

/// One step of a parsed JSONPath.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    /// `..name`: the field at any depth.
    Recursive(String),
    Index(i64),
    /// `[start:end]`.
    Slice(Option<i64>, Option<i64>),
    All,
    Filter(Filter),
}

#[derive(Debug, Clone, PartialEq)]
struct Filter {
    left: Operand,
    op: Option<(String, Operand)>,
}

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    /// `@.a.b`, relative to the item.
    Path(Vec<Step>),
    Literal(Value),
}

/// A JSONPath of kube's printer-column subset, parsed once.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonPath(Vec<Step>);

/// Why a JSONPath does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unrecognized column definition {0:?}")]
pub struct JsonPathError(pub String);

impl JsonPath {
    /// Parses `.a.b[0]['c.d'][?(@.x=="y")].e` (braces around it are accepted too).
    ///
    /// # Errors
    /// [`JsonPathError`] for anything else.
    pub fn parse(text: &str) -> Result<Self, JsonPathError> {
        let inner = text
            .trim()
            .strip_prefix('{')
            .and_then(|t| t.strip_suffix('}'))
            .unwrap_or(text.trim());
        let err = || JsonPathError(text.to_string());
        let steps = parse_steps(inner).ok_or_else(err)?;
        Ok(Self(steps))
    }

    /// Every value the path reaches in `root`, in document order.
    pub fn find<'a>(&self, root: &'a Value) -> Vec<&'a Value> {
        eval(&self.0, vec![root])
    }
}

fn parse_steps(mut s: &str) -> Option<Vec<Step>> {
    let mut steps = Vec::new();
    if s == "." || s == "$" || s.is_empty() {
        return Some(steps);
    }
    s = s.strip_prefix('$').unwrap_or(s);
    while !s.is_empty() {
        if let Some(rest) = s.strip_prefix("..") {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            if end == 0 {
                return None;
            }
            steps.push(Step::Recursive(rest[..end].to_string()));
            s = &rest[end..];
        } else if let Some(rest) = s.strip_prefix('.') {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            if end == 0 {
                return None;
            }
            let name = &rest[..end];
            if name == "*" {
                steps.push(Step::All);
            } else {
                steps.push(Step::Field(name.to_string()));
            }
            s = &rest[end..];
        } else if let Some(rest) = s.strip_prefix('[') {
            let end = bracket_end(rest)?;
            steps.push(parse_bracket(rest[..end].trim())?);
            s = &rest[end + 1..];
        } else {
            return None;
        }
    }
    Some(steps)
}

/// The index of the `]` closing a bracket, skipping quoted text and nested brackets.
fn bracket_end(s: &str) -> Option<usize> {
    let mut depth = 0;
    let mut quote: Option<char> = None;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '[' | '(') => depth += 1,
            (None, ')') => depth -= 1,
            (None, ']') if depth == 0 => return Some(i),
            (None, ']') => depth -= 1,
            _ => {}
        }
    }
    None
}

fn parse_bracket(b: &str) -> Option<Step> {
    if b == "*" {
        return Some(Step::All);
    }
    if let Some(f) = b.strip_prefix("?(").and_then(|f| f.strip_suffix(')')) {
        return parse_filter(f.trim()).map(Step::Filter);
    }
    if let Some(name) = unquote(b) {
        return Some(Step::Field(name));
    }
    if let Some((start, end)) = b.split_once(':') {
        let num = |t: &str| -> Option<Option<i64>> {
            let t = t.trim();
            if t.is_empty() {
                Some(None)
            } else {
                t.parse().ok().map(Some)
            }
        };
        let end = end.split(':').next().unwrap_or(end);
        return Some(Step::Slice(num(start)?, num(end)?));
    }
    b.parse().ok().map(Step::Index)
}

fn unquote(t: &str) -> Option<String> {
    let t = t.trim();
    for q in ['\'', '"'] {
        if t.len() >= 2 && t.starts_with(q) && t.ends_with(q) {
            return Some(t[1..t.len() - 1].to_string());
        }
    }
    None
}

fn parse_filter(f: &str) -> Option<Filter> {
    for op in ["==", "!=", "<=", ">=", "<", ">"] {
        if let Some((l, r)) = split_outside_quotes(f, op) {
            return Some(Filter {
                left: parse_operand(l.trim())?,
                op: Some((op.to_string(), parse_operand(r.trim())?)),
            });
        }
    }
    Some(Filter {
        left: parse_operand(f)?,
        op: None,
    })
}

fn split_outside_quotes<'a>(s: &'a str, op: &str) -> Option<(&'a str, &'a str)> {
    let mut quote: Option<char> = None;
    for (i, c) in s.char_indices() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, _) if s[i..].starts_with(op) => return Some((&s[..i], &s[i + op.len()..])),
            _ => {}
        }
    }
    None
}

fn parse_operand(t: &str) -> Option<Operand> {
    if let Some(rest) = t.strip_prefix('@') {
        return parse_steps(rest).map(Operand::Path);
    }
    if let Some(s) = unquote(t) {
        return Some(Operand::Literal(Value::String(s)));
    }
    serde_json::from_str::<Value>(t).ok().map(Operand::Literal)
}

fn eval<'a>(steps: &[Step], mut current: Vec<&'a Value>) -> Vec<&'a Value> {
    for step in steps {
        let mut next = Vec::new();
        for v in current {
            match step {
                Step::Field(name) => next.extend(v.get(name)),
                Step::Recursive(name) => recursive(v, name, &mut next),
                Step::Index(i) => {
                    if let Value::Array(items) = v {
                        let idx = if *i < 0 { items.len() as i64 + i } else { *i };
                        next.extend(usize::try_from(idx).ok().and_then(|i| items.get(i)));
                    }
                }
                Step::Slice(start, end) => {
                    if let Value::Array(items) = v {
                        let len = items.len() as i64;
                        let clamp =
                            |x: i64| (if x < 0 { len + x } else { x }).clamp(0, len) as usize;
                        let (a, b) = (clamp(start.unwrap_or(0)), clamp(end.unwrap_or(len)));
                        if a < b {
                            next.extend(&items[a..b]);
                        }
                    }
                }
                Step::All => match v {
                    Value::Array(items) => next.extend(items),
                    Value::Object(fields) => next.extend(fields.values()),
                    _ => {}
                },
                Step::Filter(f) => {
                    if let Value::Array(items) = v {
                        next.extend(items.iter().filter(|item| matches(f, item)));
                    }
                }
            }
        }
        current = next;
    }
    current
}

fn recursive<'a>(v: &'a Value, name: &str, out: &mut Vec<&'a Value>) {
    match v {
        Value::Object(fields) => {
            if let Some(x) = fields.get(name) {
                out.push(x);
            }
            for x in fields.values() {
                recursive(x, name, out);
            }
        }
        Value::Array(items) => {
            for x in items {
                recursive(x, name, out);
            }
        }
        _ => {}
    }
}

fn operand<'a>(o: &'a Operand, item: &'a Value) -> Option<&'a Value> {
    match o {
        Operand::Path(steps) => eval(steps, vec![item]).into_iter().next(),
        Operand::Literal(v) => Some(v),
    }
}

fn matches(f: &Filter, item: &Value) -> bool {
    let Some(left) = operand(&f.left, item) else {
        return false;
    };
    let Some((op, right)) = &f.op else {
        return true;
    };
    let Some(right) = operand(right, item) else {
        return false;
    };
    let ordering = match (left.as_f64(), right.as_f64()) {
        (Some(a), Some(b)) => a.partial_cmp(&b),
        _ => match (left.as_str(), right.as_str()) {
            (Some(a), Some(b)) => Some(a.cmp(b)),
            _ => None,
        },
    };
    match op.as_str() {
        "==" => left == right || ordering == Some(std::cmp::Ordering::Equal),
        "!=" => !(left == right || ordering == Some(std::cmp::Ordering::Equal)),
        "<" => ordering == Some(std::cmp::Ordering::Less),
        ">" => ordering == Some(std::cmp::Ordering::Greater),
        "<=" => ordering.is_some_and(|o| o != std::cmp::Ordering::Greater),
        ">=" => ordering.is_some_and(|o| o != std::cmp::Ordering::Less),
        _ => false,
    }
}

/// One cell of a custom resource's Table row.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// Nothing found, or a value of the wrong type: `null` in the Table (`<none>` in kubectl).
    Null,
    Integer(i64),
    Number(f64),
    Boolean(bool),
    String(String),
    /// A `date` column's timestamp; the Table shows its age.
    Date(Timestamp),
    /// A `date` column whose value is no timestamp: `<invalid>`.
    InvalidDate,
}

impl Cell {
    /// The cell as Table JSON, `age` printing a date (the Table code's `human_duration` since it).
    pub fn to_json(&self, age: impl Fn(Timestamp) -> String) -> Value {
        match self {
            Self::Null => Value::Null,
            Self::Integer(i) => json!(i),
            Self::Number(f) => json!(f),
            Self::Boolean(b) => json!(b),
            Self::String(s) => json!(s),
            Self::Date(t) => json!(age(*t)),
            Self::InvalidDate => json!("<invalid>"),
        }
    }
}

/// A compiled printer column.
#[derive(Debug, Clone)]
pub struct PrinterColumn {
    pub name: String,
    /// `integer`, `number`, `string`, `boolean` or `date`.
    pub type_: String,
    pub format: String,
    pub description: String,
    pub priority: i32,
    pub json_path: String,
    path: JsonPath,
}

impl PrinterColumn {
    /// The columns of a version (kube's `serveDefaultColumnsIfEmpty`: `Age` when it declares none).
    /// Columns whose path does not parse are left out (a CRD with one is refused on create).
    pub fn for_version(columns: Option<&[CustomResourceColumnDefinition]>) -> Vec<Self> {
        let age = [CustomResourceColumnDefinition {
            name: "Age".into(),
            type_: "date".into(),
            description: Some(CREATION_TIMESTAMP_DOC.into()),
            json_path: ".metadata.creationTimestamp".into(),
            ..Default::default()
        }];
        let columns = match columns {
            Some(c) if !c.is_empty() => c,
            _ => &age,
        };
        columns
            .iter()
            .filter_map(|c| {
                let path = JsonPath::parse(&c.json_path).ok()?;
                Some(Self {
                    name: c.name.clone(),
                    type_: c.type_.clone(),
                    format: c.format.clone().unwrap_or_default(),
                    description: c.description.clone().unwrap_or_else(|| {
                        format!(
                            "Custom resource definition column (in JSONPath format): {}",
                            c.json_path
                        )
                    }),
                    priority: c.priority.unwrap_or(0),
                    json_path: c.json_path.clone(),
                    path,
                })
            })
            .collect()
    }

    /// The column's cell for `obj` (kube's `cellForJSONValue`; a `string` column prints any value).
    pub fn cell(&self, obj: &Value) -> Cell {
        let Some(v) = self.path.find(obj).into_iter().next() else {
            return Cell::Null;
        };
        match (self.type_.as_str(), v) {
            (_, Value::Null) => Cell::Null,
            ("integer", Value::Number(n)) => n
                .as_i64()
                .or_else(|| n.as_f64().map(|f| f as i64))
                .map_or(Cell::Null, Cell::Integer),
            ("number", Value::Number(n)) => n.as_f64().map_or(Cell::Null, Cell::Number),
            ("boolean", Value::Bool(b)) => Cell::Boolean(*b),
            ("string", v) => Cell::String(go_print(v)),
            ("date", Value::String(s)) => s.parse().map_or(Cell::InvalidDate, Cell::Date),
            _ => Cell::Null,
        }
    }
}

/// The description kube gives the `Age` column (ObjectMeta's `creationTimestamp` doc).
const CREATION_TIMESTAMP_DOC: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

/// How client-go's jsonpath prints a value (Go's `fmt.Fprint` of the decoded JSON).
fn go_print(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        Value::String(s) => s.clone(),
        Value::Number(_) | Value::Bool(_) => super::validate::go_value(v),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(go_print).collect::<Vec<_>>().join(" ")
        ),
        Value::Object(fields) => {
            // Go prints a map's keys sorted.
            let mut entries: Vec<_> = fields.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            let entries: Vec<String> = entries
                .into_iter()
                .map(|(k, v)| format!("{k}:{}", go_print(v)))
                .collect();
            format!("map[{}]", entries.join(" "))
        }
    }
}

//! The part of CEL's type check kube users meet most, which the `cel` crate (an interpreter without a
//! checker) does not do: a rule that selects a field its schema does not declare (`self.replicsa`) is
//! refused when the CRD is created, with cel-go's `undefined field 'replicsa'` and its position, instead
//! of failing on every object later. Fields below `x-kubernetes-preserve-unknown-fields`, int-or-string
//! values and a resource's `apiVersion`, `kind` and `metadata` are not checked (they are dynamic).

use cel::Program;
use cel::common::ast::{Expr, IdedExpr, SourceInfo};

use super::structural::{AdditionalProperties, Schema};

/// The first field `program` selects that `schema` (the rule's node, `self` and `oldSelf`) lacks, as
/// cel-go reports it: `ERROR: <input>:1:5: undefined field 'foo'` with the source line and a caret.
pub fn undefined_field(program: &Program, schema: &Schema) -> Option<String> {
    let vars = vec![
        ("self".to_string(), Some(schema)),
        ("oldSelf".to_string(), Some(schema)),
    ];
    let mut found = None;
    walk(
        program.expression(),
        &vars,
        program.source_info(),
        &mut found,
    );
    found
}

type Vars<'s> = Vec<(String, Option<&'s Schema>)>;

fn lookup<'s>(vars: &Vars<'s>, name: &str) -> Option<&'s Schema> {
    vars.iter()
        .rev()
        .find(|(n, _)| n == name)
        .and_then(|(_, s)| *s)
}

/// The schema of `e`'s value where it is known; records the first undefined field in `found`.
fn walk<'s>(
    e: &IdedExpr,
    vars: &Vars<'s>,
    info: &SourceInfo,
    found: &mut Option<String>,
) -> Option<&'s Schema> {
    if found.is_some() {
        return None;
    }
    match &e.expr {
        Expr::Ident(name) => lookup(vars, name),
        Expr::Select(sel) => {
            let base = walk(&sel.operand, vars, info, found)?;
            select(base, &sel.field).unwrap_or_else(|()| {
                *found = Some(error(info, e.id, &sel.field));
                None
            })
        }
        Expr::Call(call) => {
            if let Some(target) = &call.target {
                walk(target, vars, info, found);
            }
            let args: Vec<Option<&Schema>> = call
                .args
                .iter()
                .map(|a| walk(a, vars, info, found))
                .collect();
            match (call.func_name.as_str(), args.first()) {
                ("_[_]", Some(Some(container))) => element(container),
                _ => None,
            }
        }
        Expr::Comprehension(c) => {
            let range = walk(&c.iter_range, vars, info, found);
            let item = range.and_then(|r| {
                if r.type_.as_deref() == Some("array") {
                    r.items.as_deref()
                } else {
                    None
                }
            });
            let mut inner = vars.clone();
            inner.push((c.iter_var.clone(), item));
            if let Some(v2) = &c.iter_var2 {
                inner.push((v2.clone(), None));
            }
            inner.push((c.accu_var.clone(), None));
            for part in [&c.accu_init, &c.loop_cond, &c.loop_step, &c.result] {
                walk(part, &inner, info, found);
            }
            None
        }
        Expr::List(list) => {
            for el in &list.elements {
                walk(el, vars, info, found);
            }
            None
        }
        Expr::Map(map) => {
            for entry in &map.entries {
                if let cel::common::ast::EntryExpr::MapEntry(m) = &entry.expr {
                    walk(&m.key, vars, info, found);
                    walk(&m.value, vars, info, found);
                }
            }
            None
        }
        _ => None,
    }
}

/// The schema of field `field` of a value of schema `s`; `Err` when `s` declares no such field.
fn select<'s>(s: &'s Schema, field: &str) -> Result<Option<&'s Schema>, ()> {
    if let Some(p) = s.properties.get(field) {
        return Ok(Some(p));
    }
    match &s.additional_properties {
        Some(AdditionalProperties::Schema(values)) => return Ok(Some(values)),
        Some(AdditionalProperties::Any) => return Ok(None),
        None => {}
    }
    let object = s.type_.as_deref() == Some("object");
    if !object
        || s.preserve_unknown_fields
        || s.int_or_string
        || ["apiVersion", "kind", "metadata"].contains(&field)
    {
        return Ok(None);
    }
    Err(())
}

/// The schema of an element of a list or a value of a map.
fn element(s: &Schema) -> Option<&Schema> {
    match (s.type_.as_deref(), &s.additional_properties) {
        (Some("array"), _) => s.items.as_deref(),
        (_, Some(AdditionalProperties::Schema(values))) => Some(values),
        _ => None,
    }
}

/// cel-go's error at the `.` that selects `field` in the expression `id`.
fn error(info: &SourceInfo, id: u64, field: &str) -> String {
    let source = info.source.as_str();
    let (start, stop) = info
        .offset_for(id)
        .map_or((0, source.len()), |(a, b)| (a as usize, b as usize));
    let span = source
        .get(start..stop.max(start).min(source.len()))
        .unwrap_or_default();
    let needle = format!(".{field}");
    // A `has()` test carries the macro's position: its field's `.` comes after it.
    let dot = span
        .rfind(&needle)
        .map(|i| start + i)
        .or_else(|| source.get(start..)?.find(&needle).map(|i| start + i))
        .unwrap_or(start)
        .min(source.len());
    let line_start = source[..dot].rfind('\n').map_or(0, |i| i + 1);
    let line_no = source[..dot].matches('\n').count() + 1;
    let column = source[line_start..dot].chars().count() + 1;
    let line = source[line_start..].lines().next().unwrap_or_default();
    format!(
        "ERROR: <input>:{line_no}:{column}: undefined field '{field}'\n| {line}\n| {}^",
        ".".repeat(column - 1)
    )
}

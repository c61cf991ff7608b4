//! `?watch=true`: newline-delimited `{"type","object"}` events, resumable from a `resourceVersion`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use herd_api::{FieldSelector, LabelSelector, ResourceInfo};
use serde_json::{Value, json};

use super::table::TableRequest;
use super::{AppState, Params, body_stream};
use crate::error::ApiError;
use crate::objects::{Change, EventType};

/// Longest a watch stays open when the client gives no `timeoutSeconds` (kube-apiserver picks 30–60 min).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);

pub async fn serve(
    state: &AppState,
    res: &'static ResourceInfo,
    ns: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
    params: &Params,
    table: Option<TableRequest>,
) -> Result<Response, ApiError> {
    if params.get("sendInitialEvents").is_some_and(|v| v == "true") {
        return Err(ApiError::Invalid {
            message: "ListOptions.meta.k8s.io \"\" is invalid: sendInitialEvents: Forbidden: sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled".into(),
            group: "meta.k8s.io".into(),
            kind: "ListOptions".into(),
            name: String::new(),
            causes: vec![herd_api::Cause {
                reason: "FieldValueForbidden",
                field: "sendInitialEvents".into(),
                message: "Forbidden: sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled".into(),
            }],
        });
    }
    let ns = if res.namespaced { ns } else { None };
    let rv = params
        .get("resourceVersion")
        .filter(|v| !v.is_empty() && *v != "0");
    let timeout = params
        .get("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .map_or(DEFAULT_TIMEOUT, Duration::from_secs);
    // Without a resourceVersion the watch starts with the current state as ADDED events.
    let (initial, since) = match rv {
        Some(rv) => {
            let since = rv
                .parse::<i64>()
                .map_err(|_| ApiError::BadRequest(format!("invalid resource version: {rv}")))?;
            (Vec::new(), since)
        }
        None => {
            state
                .objects
                .list(res, ns.as_deref(), &labels, &fields)
                .await?
        }
    };
    let changes = match state.objects.watch(Some(res), since).await {
        Ok(s) => s,
        Err(e) => {
            // kube-apiserver reports an expired resourceVersion as an ERROR event on a 200 stream.
            let status = ApiError::from(e).status();
            let line = event_line("ERROR", &status);
            return Ok(stream_response(
                futures::stream::once(async move { Ok(line) }).boxed(),
            ));
        }
    };
    let initial = futures::stream::iter(initial.into_iter().map(|o| ("ADDED", o)));
    let live = changes.filter_map(move |c| {
        let out = match c {
            Ok(change) => filter(&change, ns.as_deref(), &labels, &fields),
            Err(e) => Some(("ERROR", ApiError::from(e).status())),
        };
        futures::future::ready(out)
    });
    // A Table watch sends columnDefinitions with its first event only, as kube-apiserver does.
    let mut first = true;
    let encode = move |(kind, object): (&'static str, Value)| {
        let line = match table {
            Some(t) => event_line(kind, &t.watch_event(res, &object, first)),
            None => event_line(kind, &object),
        };
        first = false;
        Ok(line)
    };
    let shutdown = state.shutdown.clone();
    let stream = initial
        .chain(live)
        .map(encode)
        .take_until(async move {
            tokio::select! {
                () = shutdown.cancelled() => {}
                () = tokio::time::sleep(timeout) => {}
            }
        })
        .boxed();
    Ok(stream_response(stream))
}

fn stream_response(
    stream: futures::stream::BoxStream<'static, Result<Bytes, std::io::Error>>,
) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        body_stream(stream),
    )
        .into_response()
}

fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
    line.push(b'\n');
    Bytes::from(line)
}

/// Decides what a watcher with these filters sees of a change: an object that stops matching is DELETED
/// for it, one that starts matching is ADDED.
fn filter(
    change: &Arc<Change>,
    ns: Option<&str>,
    labels: &LabelSelector,
    fields: &FieldSelector,
) -> Option<(&'static str, Value)> {
    if ns.is_some_and(|ns| ns != change.namespace) {
        return None;
    }
    let matches = |o: &Value| labels.matches_object(o) && fields.matches(o);
    let now = matches(&change.object);
    let before = change.previous.as_deref().map(matches);
    let kind = match (change.kind, before, now) {
        (EventType::Deleted, _, true) => "DELETED",
        (EventType::Added, _, true) => "ADDED",
        (EventType::Modified, Some(false), true) => "ADDED",
        (EventType::Modified, _, true) => "MODIFIED",
        (EventType::Modified, Some(true), false) => "DELETED",
        _ => return None,
    };
    Some((kind, (*change.object).clone()))
}

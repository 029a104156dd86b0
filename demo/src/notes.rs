//! The demo notes API: the seed's `note` model (`title`, `content`, plus `id`), kept in memory.
//!
//! It also answers `/me` and `/protected` from the identity headers bearer-auth sets, and echoes
//! what the gateway forwarded (path, host, `x-auth-*`) in `x-demo-received-*` response headers so
//! tests can see it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::problem::Problem;

const MAX_TITLE_CHARS: usize = 200;
const MAX_CONTENT_CHARS: usize = 10_000;
/// Identity headers set by bearer-auth, echoed back as `x-demo-received-<name>`.
const ECHOED_HEADERS: [&str; 4] = [
    "x-auth-subject",
    "x-auth-client-id",
    "x-auth-scope",
    "x-wasmgate-original-path",
];

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Note {
    pub id: u64,
    pub title: Option<String>,
    pub content: Option<String>,
}

#[derive(Default)]
struct Store {
    next_id: u64,
    notes: BTreeMap<u64, Note>,
}

type Shared = Arc<Mutex<Store>>;

pub fn router() -> Router {
    Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/api/notes", get(list).post(create))
        .route(
            "/api/notes/{id}",
            get(read).put(replace).patch(update).delete(remove),
        )
        .route("/me", get(me))
        .route("/protected", get(protected))
        .fallback(|| async { Problem::status(StatusCode::NOT_FOUND, "no such resource") })
        .layer(middleware::from_fn(echo_forwarded))
        .with_state(Shared::default())
}

/// Adds `x-demo-received-path`, `-host` and the identity headers the request carried.
async fn echo_forwarded(request: Request, next: Next) -> Response {
    let path = request.uri().path_and_query().map_or_else(
        || request.uri().path().to_owned(),
        |pq| pq.as_str().to_owned(),
    );
    let mut echoed: Vec<(HeaderName, HeaderValue)> = Vec::new();
    if let Ok(value) = HeaderValue::from_str(&path) {
        echoed.push((HeaderName::from_static("x-demo-received-path"), value));
    }
    if let Some(host) = request.headers().get("host") {
        echoed.push((
            HeaderName::from_static("x-demo-received-host"),
            host.clone(),
        ));
    }
    for name in ECHOED_HEADERS {
        if let Some(value) = request.headers().get(name) {
            let echo_name = format!("x-demo-received-{}", name.trim_start_matches("x-"));
            if let Ok(echo_name) = HeaderName::try_from(echo_name) {
                echoed.push((echo_name, value.clone()));
            }
        }
    }
    let mut response = next.run(request).await;
    response.headers_mut().extend(echoed);
    response
}

fn lock(store: &Shared) -> std::sync::MutexGuard<'_, Store> {
    // A panic while holding the lock cannot leave a note half-written (every update is a
    // single map operation), so a poisoned lock is still safe to use.
    store.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn list(State(store): State<Shared>) -> Json<Vec<Note>> {
    Json(lock(&store).notes.values().cloned().collect())
}

async fn create(State(store): State<Shared>, body: Bytes) -> Result<Response, Problem> {
    let fields = NoteFields::parse(&body, true)?;
    let mut store = lock(&store);
    store.next_id += 1;
    let note = Note {
        id: store.next_id,
        title: fields.title.flatten(),
        content: fields.content.flatten(),
    };
    store.notes.insert(note.id, note.clone());
    let location = format!("/api/notes/{}", note.id);
    Ok((StatusCode::CREATED, [("location", location)], Json(note)).into_response())
}

async fn read(State(store): State<Shared>, Path(id): Path<String>) -> Result<Json<Note>, Problem> {
    let id = parse_id(&id)?;
    lock(&store)
        .notes
        .get(&id)
        .cloned()
        .map(Json)
        .ok_or_else(|| not_found(id))
}

/// PUT: the body is the whole note; fields left out become null.
async fn replace(
    State(store): State<Shared>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Note>, Problem> {
    let id = parse_id(&id)?;
    let fields = NoteFields::parse(&body, true)?;
    let mut store = lock(&store);
    let note = store.notes.get_mut(&id).ok_or_else(|| not_found(id))?;
    note.title = fields.title.flatten();
    note.content = fields.content.flatten();
    Ok(Json(note.clone()))
}

/// PATCH: only the fields present change.
async fn update(
    State(store): State<Shared>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Note>, Problem> {
    let id = parse_id(&id)?;
    let fields = NoteFields::parse(&body, false)?;
    let mut store = lock(&store);
    let note = store.notes.get_mut(&id).ok_or_else(|| not_found(id))?;
    if let Some(title) = fields.title {
        note.title = title;
    }
    if let Some(content) = fields.content {
        note.content = content;
    }
    Ok(Json(note.clone()))
}

async fn remove(
    State(store): State<Shared>,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    let id = parse_id(&id)?;
    lock(&store)
        .notes
        .remove(&id)
        .map(|_| StatusCode::NO_CONTENT)
        .ok_or_else(|| not_found(id))
}

/// Who the gateway says is calling: the identity headers bearer-auth set.
async fn me(headers: HeaderMap) -> Result<Json<Value>, Problem> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let client_id = header("x-auth-client-id").ok_or_else(|| {
        Problem::status(
            StatusCode::UNAUTHORIZED,
            "no identity: this endpoint is meant to be reached through the gateway",
        )
    })?;
    let scopes: Vec<&str> = header("x-auth-scope")
        .map(|s| s.split_ascii_whitespace().collect())
        .unwrap_or_default();
    Ok(Json(json!({
        "subject": header("x-auth-subject"),
        "client_id": client_id,
        "scopes": scopes,
    })))
}

async fn protected(headers: HeaderMap) -> Json<Value> {
    let subject = headers
        .get("x-auth-subject")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("anonymous");
    Json(json!({"message": format!("Hello {subject}, this resource is protected by wasmgate.")}))
}

fn parse_id(raw: &str) -> Result<u64, Problem> {
    raw.parse().map_err(|_| {
        Problem::invalid(
            "id",
            format!("`{raw}` is not a note id (a positive integer)"),
        )
    })
}

fn not_found(id: u64) -> Problem {
    Problem::status(StatusCode::NOT_FOUND, format!("note {id} does not exist"))
}

/// The writable fields of a note as sent by a client. The outer `Option` says whether the field
/// was present, the inner one whether it was null.
#[derive(Debug, Default, PartialEq)]
struct NoteFields {
    title: Option<Option<String>>,
    content: Option<Option<String>>,
}

impl NoteFields {
    /// Parses a JSON object; `id` may be present (LoopBack clients send it back) but must not
    /// change anything. Unknown fields are refused so that typos don't pass silently.
    fn parse(body: &[u8], absent_means_null: bool) -> Result<Self, Problem> {
        let value: Value = serde_json::from_slice(body)
            .map_err(|err| Problem::invalid("body", format!("not valid JSON: {err}")))?;
        let Value::Object(map) = value else {
            return Err(Problem::invalid("body", "must be a JSON object"));
        };
        if let Some(unknown) = map
            .keys()
            .find(|k| !matches!(k.as_str(), "title" | "content" | "id"))
        {
            return Err(Problem::invalid(
                "body",
                format!("unknown field `{unknown}`"),
            ));
        }
        let mut fields = Self {
            title: text_field(&map, "title", MAX_TITLE_CHARS)?,
            content: text_field(&map, "content", MAX_CONTENT_CHARS)?,
        };
        if absent_means_null {
            fields.title.get_or_insert(None);
            fields.content.get_or_insert(None);
        }
        Ok(fields)
    }
}

fn text_field(
    map: &Map<String, Value>,
    name: &'static str,
    max_chars: usize,
) -> Result<Option<Option<String>>, Problem> {
    match map.get(name) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) if s.chars().count() > max_chars => Err(Problem::invalid(
            name,
            format!("must be at most {max_chars} characters"),
        )),
        Some(Value::String(s)) => Ok(Some(Some(s.clone()))),
        Some(_) => Err(Problem::invalid(name, "must be a string or null")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_fills_missing_fields_with_null_and_patch_does_not() {
        let put = NoteFields::parse(br#"{"title":"a"}"#, true).unwrap();
        assert_eq!(put.content, Some(None));
        let patch = NoteFields::parse(br#"{"title":"a"}"#, false).unwrap();
        assert_eq!(patch.content, None);
    }

    #[test]
    fn wrong_types_name_the_field() {
        let err = NoteFields::parse(br#"{"title":1}"#, true).unwrap_err();
        assert_eq!(err.field, Some("title"));
        let err = NoteFields::parse(br#"{"titel":"x"}"#, true).unwrap_err();
        assert!(err.detail.contains("titel"));
        let err = NoteFields::parse(b"[]", true).unwrap_err();
        assert_eq!(err.field, Some("body"));
    }

    #[test]
    fn overlong_content_is_refused() {
        let body = json!({"content": "x".repeat(MAX_CONTENT_CHARS + 1)}).to_string();
        let err = NoteFields::parse(body.as_bytes(), true).unwrap_err();
        assert_eq!(err.field, Some("content"));
    }
}

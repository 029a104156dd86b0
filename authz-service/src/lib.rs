//! wasmgate's OAuth 2.0 authorization server, as a library. PLACEHOLDER: only the health
//! endpoint exists until the authz-service issue lands.

use axum::{Json, Router, routing::get};
use serde_json::json;

/// The service's HTTP routes.
pub fn router() -> Router {
    Router::new().route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
}

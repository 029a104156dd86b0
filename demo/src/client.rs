//! The demo client's web pages. PLACEHOLDER for the browser-flow issue: a home page that points
//! at what the gateway offers; the OAuth flows (authorize, login, consent, callback) land there.

use axum::Router;
use axum::extract::{Query, State};
use axum::response::Html;
use axum::routing::get;
use serde::Deserialize;

pub fn router(public_url: String) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/callback", get(callback))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(public_url)
}

async fn home(State(public_url): State<String>) -> Html<String> {
    Html(page(
        "wasmgate demo",
        &format!(
            "<p>The gateway at <code>{url}</code> protects <a href=\"/api/notes\">/api/notes</a> \
             with OAuth 2.0 bearer tokens, rate limiting and rewrite rules.</p>\
             <p>Authorization server metadata: \
             <a href=\"/.well-known/oauth-authorization-server\">/.well-known/oauth-authorization-server</a></p>",
            url = escape(&public_url)
        ),
    ))
}

#[derive(Deserialize)]
struct CallbackParams {
    code: Option<String>,
    error: Option<String>,
}

async fn callback(Query(params): Query<CallbackParams>) -> Html<String> {
    let body = match (params.code, params.error) {
        (_, Some(error)) => format!(
            "<p>The authorization failed: <code>{}</code></p>",
            escape(&error)
        ),
        (Some(_), None) => "<p>An authorization code arrived.</p>".to_owned(),
        (None, None) => "<p>No authorization response in this request.</p>".to_owned(),
    };
    Html(page("Callback", &body))
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title></head><body><main><h1>{title}</h1>{body}</main></body></html>"
    )
}

/// HTML-escapes text placed in a page.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

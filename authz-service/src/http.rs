//! HTTP front: handlers extract the request parts, call the library, and map the result.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde_json::json;
use sha2::Digest;

use crate::error::OAuthError;
use crate::service::Authz;
use crate::token_endpoint::{self, TokenRequest};

/// The service's HTTP routes.
pub fn router(authz: Arc<Authz>) -> Router {
    let limit = authz.config.security.max_body_bytes;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/.well-known/oauth-authorization-server", get(metadata))
        .route("/oauth2/token", post(token))
        .merge(crate::flows::web::routes())
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
        .with_state(authz)
}

/// RFC 9457 problem details, for errors no OAuth standard covers.
pub fn problem(status: StatusCode, detail: &str) -> Response {
    let body = json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail,
    });
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    r
}

async fn not_found() -> Response {
    problem(StatusCode::NOT_FOUND, "no such endpoint")
}

async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response {
    let mut r = (status, body.to_string()).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// RFC 6749 §5.1/§5.2: never cache token responses, errors included.
fn no_store(mut r: Response) -> Response {
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    r
}

pub fn error_response(e: &OAuthError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut r = json_response(
        status,
        &json!({"error": e.code.as_str(), "error_description": e.description}),
    );
    if status == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"wasmgate\", charset=\"UTF-8\""),
        );
    }
    if let Some(v) = e
        .retry_after
        .and_then(|secs| HeaderValue::from_str(&secs.to_string()).ok())
    {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    no_store(r)
}

pub(crate) fn caller_ip(authz: &Authz, headers: &HeaderMap, peer: SocketAddr) -> std::net::IpAddr {
    if authz.config.security.trust_forwarded_for {
        // The proxy in front (Envoy) appends the address it saw; earlier entries are the
        // client's own claims and can't be trusted.
        let forwarded = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|s| s.trim().parse().ok())
            .next_back();
        if let Some(ip) = forwarded {
            return ip;
        }
    }
    peer.ip()
}

async fn token(
    State(authz): State<Arc<Authz>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(rejection) => {
            // Over the body limit (413) or unreadable: an RFC 6749 error, with the right status.
            tracing::warn!(reason = %rejection.body_text(), "token request refused");
            let mut r = error_response(&OAuthError::invalid_request(rejection.body_text()));
            *r.status_mut() = rejection.status();
            return r;
        }
    };
    let header_str = |name: header::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let req = TokenRequest {
        authorization: header_str(header::AUTHORIZATION),
        content_type: header_str(header::CONTENT_TYPE),
        body: body.to_vec(),
        caller_ip: Some(caller_ip(&authz, &headers, peer)),
    };
    let ip = req.caller_ip;
    // Storage calls and hashing block: keep them off the async workers.
    let worker = authz.clone();
    let outcome = tokio::task::spawn_blocking(move || token_endpoint::handle(&worker, &req)).await;
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            tracing::error!("token handler failed: {e}");
            return error_response(&OAuthError::server_error("internal error"));
        }
    };
    let client = outcome.client_id.as_deref().unwrap_or("-");
    let grant = outcome.grant_type.unwrap_or("-");
    match outcome.result {
        Ok(resp) => {
            tracing::info!(client, grant, scope = %resp.scope, "token issued");
            let body = serde_json::to_value(&resp).unwrap_or_default();
            no_store(json_response(StatusCode::OK, &body))
        }
        Err(e) => {
            tracing::warn!(client, grant, ip = ?ip, error = e.code.as_str(), reason = %e.description, "token request refused");
            error_response(&e)
        }
    }
}

async fn jwks(State(authz): State<Arc<Authz>>, headers: HeaderMap) -> Response {
    let doc = match authz.jwks() {
        Ok(d) => d,
        Err(e) => return error_response(&e),
    };
    let body = doc.to_string();
    let digest = sha2::Sha256::digest(body.as_bytes());
    let etag = format!(
        "\"{}\"",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.get(..16).unwrap_or(&[]))
    );
    let cache = format!("public, max-age={}", authz.config.keys.jwks_max_age_secs);
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
    let mut r = if matches {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = (StatusCode::OK, body).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/jwk-set+json"),
        );
        r
    };
    if let (Ok(etag), Ok(cache)) = (HeaderValue::from_str(&etag), HeaderValue::from_str(&cache)) {
        r.headers_mut().insert(header::ETAG, etag);
        r.headers_mut().insert(header::CACHE_CONTROL, cache);
    }
    r
}

async fn metadata(State(authz): State<Arc<Authz>>) -> Response {
    let mut r = json_response(StatusCode::OK, &crate::metadata::document(&authz.config));
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    r
}

/// Serve until `shutdown` resolves. Also purges expired replay-store entries and token records
/// every few minutes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    authz: Arc<Authz>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let purger = authz.clone();
    let purge = tokio::spawn(async move {
        let mut every = tokio::time::interval(std::time::Duration::from_secs(300));
        loop {
            every.tick().await;
            let a = purger.clone();
            let _ = tokio::task::spawn_blocking(move || {
                if let Err(e) = a.storage.purge_expired(a.clock.now()) {
                    tracing::warn!("purging expired records failed: {e}");
                }
                if let Err(e) = a.storage.purge_expired_flows(a.clock.now()) {
                    tracing::warn!("purging expired browser-flow records failed: {e}");
                }
            })
            .await;
        }
    });
    let app = router(authz).into_make_service_with_connect_info::<SocketAddr>();
    let r = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    purge.abort();
    r
}

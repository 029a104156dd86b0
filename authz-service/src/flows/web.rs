//! HTTP front of the browser flows: each handler extracts the request parts, runs the flow
//! logic (off the async workers: storage and password hashing block) and maps the outcome to a
//! page or a redirect with the security headers every page needs.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::client_auth::{self, AuthenticatedClient};
use crate::error::OAuthError;
use crate::form::Form;
use crate::service::Authz;

use super::authorize::{self, AuthorizationRequest, AuthorizeError};
use super::login::LoginError;
use super::pages;
use super::session::{self, Session};

const REQUEST_PURPOSE: &str = "authorization-request";

pub fn routes() -> Router<Arc<Authz>> {
    Router::new()
        .route("/oauth2/authorize", get(authorize_get))
        .route("/login", get(login_get).post(login_post))
        .route("/consent", get(consent_get).post(consent_post))
        .route("/oauth2/introspect", post(introspect_post))
        .route("/oauth2/revoke", post(revoke_post))
}

/// What a page handler answers.
pub enum Reply {
    Page {
        status: StatusCode,
        html: String,
        cookies: Vec<String>,
    },
    /// `303 See Other`: after a form POST the browser must GET the target.
    Redirect {
        location: String,
        cookies: Vec<String>,
    },
}

impl Reply {
    fn error(status: StatusCode, title: &str, message: &str) -> Reply {
        Reply::Page {
            status,
            html: pages::error(title, message),
            cookies: Vec::new(),
        }
    }

    fn with_cookie(mut self, cookie: Option<String>) -> Reply {
        if let Some(c) = cookie {
            match &mut self {
                Reply::Page { cookies, .. } | Reply::Redirect { cookies, .. } => cookies.push(c),
            }
        }
        self
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let (mut r, cookies) = match self {
            Reply::Page {
                status,
                html,
                cookies,
            } => {
                let mut r = (status, html).into_response();
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                );
                (r, cookies)
            }
            Reply::Redirect { location, cookies } => {
                let mut r = StatusCode::SEE_OTHER.into_response();
                if let Ok(v) = HeaderValue::from_str(&location) {
                    r.headers_mut().insert(header::LOCATION, v);
                }
                (r, cookies)
            }
        };
        let h = r.headers_mut();
        for c in cookies {
            if let Ok(v) = HeaderValue::from_str(&c) {
                h.append(header::SET_COOKIE, v);
            }
        }
        // No framing (clickjacking of the consent buttons), no caching of pages that carry
        // CSRF tokens, no leaking of codes through the Referer header.
        h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(
                "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
            ),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        r
    }
}

/// The parts of a request the page logic needs.
pub struct PageRequest {
    pub query: String,
    pub cookie: Option<String>,
    pub body: Vec<u8>,
    pub ip: Option<IpAddr>,
}

fn page_request(
    authz: &Authz,
    query: Option<String>,
    headers: &HeaderMap,
    peer: SocketAddr,
    body: Bytes,
) -> PageRequest {
    let cookie: Vec<&str> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    PageRequest {
        query: query.unwrap_or_default(),
        cookie: (!cookie.is_empty()).then(|| cookie.join("; ")),
        body: body.to_vec(),
        ip: Some(crate::http::caller_ip(authz, headers, peer)),
    }
}

async fn run(authz: Arc<Authz>, req: PageRequest, f: fn(&Authz, &PageRequest) -> Reply) -> Reply {
    match tokio::task::spawn_blocking(move || f(&authz, &req)).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("page handler failed: {e}");
            Reply::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "The authorization server failed to handle the request.",
            )
        }
    }
}

macro_rules! page_handler {
    ($name:ident, $logic:path) => {
        async fn $name(
            State(authz): State<Arc<Authz>>,
            ConnectInfo(peer): ConnectInfo<SocketAddr>,
            RawQuery(query): RawQuery,
            headers: HeaderMap,
            body: Bytes,
        ) -> Reply {
            let req = page_request(&authz, query, &headers, peer, body);
            run(authz, req, $logic).await
        }
    };
}

page_handler!(authorize_get, authorize_page);
page_handler!(login_get, login_form);
page_handler!(login_post, login_submit);
page_handler!(consent_get, consent_form);
page_handler!(consent_post, consent_submit);

fn server_error() -> Reply {
    Reply::error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Something went wrong",
        "The authorization server could not complete the request; try again later.",
    )
}

/// Send the user back to the client with an error.
fn redirect_error(authz: &Authz, e: &authorize::ErrorRedirect) -> Reply {
    tracing::info!(error = e.error, reason = %e.description, "authorization request refused");
    Reply::Redirect {
        location: e.location(&authz.config.issuer),
        cookies: Vec::new(),
    }
}

/// `GET /oauth2/authorize`.
pub fn authorize_page(authz: &Authz, req: &PageRequest) -> Reply {
    match authorize::validate(authz, &req.query) {
        Err(AuthorizeError::Page(message)) => {
            tracing::info!(reason = %message, "authorization request refused (not redirectable)");
            Reply::error(StatusCode::BAD_REQUEST, "Invalid request", &message)
        }
        Err(AuthorizeError::Redirect(e)) => redirect_error(authz, &e),
        Ok(ar) => next_step(authz, &ar, session::current(authz, req.cookie.as_deref())),
    }
}

/// Where the user goes next: sign in, then consent (unless remembered), then back to the client.
fn next_step(authz: &Authz, ar: &AuthorizationRequest, session: Option<Session>) -> Reply {
    let Some(sealed) = authz.flows.signer.seal(REQUEST_PURPOSE, ar) else {
        return server_error();
    };
    let q = form_urlencoded::Serializer::new(String::new())
        .append_pair("request", &sealed)
        .finish();
    let Some(session) = session else {
        return Reply::Redirect {
            location: format!("/login?{q}"),
            cookies: Vec::new(),
        };
    };
    match super::consent::remembered(authz, &session.subject, &ar.client_id, &ar.scopes) {
        Ok(true) => issue_code(authz, &session, ar),
        Ok(false) => Reply::Redirect {
            location: format!("/consent?{q}"),
            cookies: Vec::new(),
        },
        Err(e) => {
            tracing::error!("storage error: {e}");
            server_error()
        }
    }
}

fn issue_code(authz: &Authz, session: &Session, ar: &AuthorizationRequest) -> Reply {
    match super::code_grant::issue_code(authz, &session.subject, ar) {
        Ok(code) => {
            tracing::info!(client = %ar.client_id, user = %session.subject, "authorization code issued");
            Reply::Redirect {
                location: ar.success_location(&code, &authz.config.issuer),
                cookies: Vec::new(),
            }
        }
        Err(e) => {
            tracing::error!("issuing a code failed: {e}");
            redirect_error(
                authz,
                &ar.error("server_error", "the code could not be issued"),
            )
        }
    }
}

/// The pending request from a `request` value, if it is ours and not expired.
fn pending(authz: &Authz, sealed: Option<&str>) -> Result<AuthorizationRequest, Reply> {
    let bad = |m: &str| Reply::error(StatusCode::BAD_REQUEST, "Invalid request", m);
    let sealed = sealed.ok_or_else(|| bad("The sign-in request is missing."))?;
    let ar: AuthorizationRequest = authz
        .flows
        .signer
        .open(REQUEST_PURPOSE, sealed)
        .ok_or_else(|| bad("The sign-in request is not valid."))?;
    if ar.expires_at <= authz.clock.now() {
        return Err(bad("The sign-in request expired."));
    }
    Ok(ar)
}

fn query_param(query: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

fn login_page_reply(
    authz: &Authz,
    req: &PageRequest,
    ar: &AuthorizationRequest,
    sealed: &str,
    status: StatusCode,
    username: &str,
    error: Option<&str>,
) -> Reply {
    let (csrf_cookie, set) = session::csrf_cookie(req.cookie.as_deref());
    let csrf = session::csrf_token(authz, &csrf_cookie);
    Reply::Page {
        status,
        html: pages::login(&pages::LoginPage {
            client_id: &ar.client_id,
            request: sealed,
            csrf: &csrf,
            username,
            error,
        }),
        cookies: Vec::new(),
    }
    .with_cookie(set)
}

/// `GET /login?request=…`.
pub fn login_form(authz: &Authz, req: &PageRequest) -> Reply {
    let sealed = query_param(&req.query, "request");
    let ar = match pending(authz, sealed.as_deref()) {
        Ok(ar) => ar,
        Err(r) => return r,
    };
    if let Some(s) = session::current(authz, req.cookie.as_deref()) {
        return next_step(authz, &ar, Some(s));
    }
    login_page_reply(
        authz,
        req,
        &ar,
        sealed.as_deref().unwrap_or_default(),
        StatusCode::OK,
        "",
        None,
    )
}

fn csrf_failed() -> Reply {
    tracing::warn!("form refused: CSRF token missing or wrong");
    Reply::error(
        StatusCode::FORBIDDEN,
        "Form expired",
        "The form was not sent from this site or has expired.",
    )
}

fn parse_form(req: &PageRequest) -> Result<Form, Reply> {
    Form::parse(&req.body).map_err(|e| {
        tracing::info!(reason = %e.description, "form refused");
        Reply::error(StatusCode::BAD_REQUEST, "Invalid form", &e.description)
    })
}

/// `POST /login`.
pub fn login_submit(authz: &Authz, req: &PageRequest) -> Reply {
    let form = match parse_form(req) {
        Ok(f) => f,
        Err(r) => return r,
    };
    if !session::csrf_ok(authz, req.cookie.as_deref(), form.get("csrf_token")) {
        return csrf_failed();
    }
    let sealed = form.get("request");
    let ar = match pending(authz, sealed) {
        Ok(ar) => ar,
        Err(r) => return r,
    };
    let sealed = sealed.unwrap_or_default();
    let username = form.get("username").unwrap_or_default();
    let password = form.get("password").unwrap_or_default();
    match super::login::check(authz, username, password, req.ip) {
        Ok(()) => {
            tracing::info!(user = %username, ip = ?req.ip, "login succeeded");
            let Some(cookie) = session::start(authz, username) else {
                return server_error();
            };
            let now = authz.clock.now();
            let s = Session {
                subject: username.to_string(),
                auth_time: now,
                expires_at: now.saturating_add(authz.config.browser.session_lifetime_secs),
            };
            next_step(authz, &ar, Some(s)).with_cookie(Some(cookie))
        }
        Err(LoginError::BadCredentials) => {
            tracing::warn!(user = %username, ip = ?req.ip, "login failed: wrong username or password");
            login_page_reply(
                authz,
                req,
                &ar,
                sealed,
                StatusCode::UNAUTHORIZED,
                username,
                Some("Wrong username or password."),
            )
        }
        Err(LoginError::Throttled(wait)) => {
            tracing::warn!(user = %username, ip = ?req.ip, "login throttled");
            let msg = format!("Too many failed sign-ins. Try again in {wait} seconds.");
            login_page_reply(
                authz,
                req,
                &ar,
                sealed,
                StatusCode::TOO_MANY_REQUESTS,
                username,
                Some(&msg),
            )
        }
        Err(LoginError::Unavailable) => server_error(),
    }
}

/// `GET /consent?request=…`.
pub fn consent_form(authz: &Authz, req: &PageRequest) -> Reply {
    let sealed = query_param(&req.query, "request");
    let ar = match pending(authz, sealed.as_deref()) {
        Ok(ar) => ar,
        Err(r) => return r,
    };
    let Some(s) = session::current(authz, req.cookie.as_deref()) else {
        return next_step(authz, &ar, None);
    };
    let (csrf_cookie, set) = session::csrf_cookie(req.cookie.as_deref());
    let csrf = session::csrf_token(authz, &csrf_cookie);
    Reply::Page {
        status: StatusCode::OK,
        html: pages::consent(&pages::ConsentPage {
            client_id: &ar.client_id,
            subject: &s.subject,
            scopes: &ar.scopes,
            request: sealed.as_deref().unwrap_or_default(),
            csrf: &csrf,
        }),
        cookies: Vec::new(),
    }
    .with_cookie(set)
}

/// `POST /consent`.
pub fn consent_submit(authz: &Authz, req: &PageRequest) -> Reply {
    let form = match parse_form(req) {
        Ok(f) => f,
        Err(r) => return r,
    };
    if !session::csrf_ok(authz, req.cookie.as_deref(), form.get("csrf_token")) {
        return csrf_failed();
    }
    let ar = match pending(authz, form.get("request")) {
        Ok(ar) => ar,
        Err(r) => return r,
    };
    let Some(s) = session::current(authz, req.cookie.as_deref()) else {
        return next_step(authz, &ar, None);
    };
    match form.get("decision") {
        Some("allow") => {
            if form.get("remember") == Some("yes")
                && let Err(e) =
                    super::consent::remember(authz, &s.subject, &ar.client_id, &ar.scopes)
            {
                tracing::error!("storage error: {e}");
                return server_error();
            }
            issue_code(authz, &s, &ar)
        }
        Some("deny") => {
            tracing::info!(client = %ar.client_id, user = %s.subject, "user denied the authorization");
            redirect_error(
                authz,
                &ar.error("access_denied", "the user denied the authorization"),
            )
        }
        _ => Reply::error(
            StatusCode::BAD_REQUEST,
            "Invalid form",
            "Choose Allow or Deny.",
        ),
    }
}

/// Client-authenticated form endpoints (introspection, revocation): the same parsing and
/// throttled client authentication as the token endpoint.
fn client_form(
    authz: &Authz,
    headers: &HeaderMap,
    ip: IpAddr,
    body: &[u8],
) -> Result<(Form, Option<AuthenticatedClient>, Option<String>), OAuthError> {
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|t| {
            t.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !is_form {
        return Err(OAuthError::invalid_request(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let form = Form::parse(body)?;
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let creds = client_auth::extract(authorization, &form)?;
    let claimed = creds.claimed_client_id();
    let client =
        crate::token_endpoint::authenticate_throttled(authz, &creds, Some(ip), claimed.as_deref())?;
    Ok((form, client, claimed))
}

async fn introspect_post(
    State(authz): State<Arc<Authz>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ip = crate::http::caller_ip(&authz, &headers, peer);
    let a = authz.clone();
    let out = tokio::task::spawn_blocking(move || {
        let (form, client, _) = client_form(&a, &headers, ip, &body)?;
        super::introspect::introspect(&a, client.as_ref(), &form)
    })
    .await
    .unwrap_or_else(|_| Err(OAuthError::server_error("internal error")));
    match out {
        Ok(v) => {
            let mut r = (StatusCode::OK, v.to_string()).into_response();
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err(e) => {
            tracing::warn!(ip = %ip, error = e.code.as_str(), reason = %e.description, "introspection refused");
            crate::http::error_response(&e)
        }
    }
}

async fn revoke_post(
    State(authz): State<Arc<Authz>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let ip = crate::http::caller_ip(&authz, &headers, peer);
    let a = authz.clone();
    let out = tokio::task::spawn_blocking(move || {
        let (form, client, claimed) = client_form(&a, &headers, ip, &body)?;
        super::revoke::revoke(&a, client.as_ref(), claimed.as_deref(), &form)
            .map(|what| (what, claimed))
    })
    .await
    .unwrap_or_else(|_| Err(OAuthError::server_error("internal error")));
    match out {
        Ok((what, client)) => {
            tracing::info!(client = client.as_deref().unwrap_or("-"), revoked = ?what, "revocation");
            let mut r = StatusCode::OK.into_response();
            r.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            r
        }
        Err(e) => {
            tracing::warn!(ip = %ip, error = e.code.as_str(), reason = %e.description, "revocation refused");
            crate::http::error_response(&e)
        }
    }
}

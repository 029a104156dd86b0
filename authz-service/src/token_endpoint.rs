//! `/oauth2/token` as plain logic: from the raw request parts to a token or an RFC 6749 §5.2
//! error. Order: form, grant type, client authentication (throttled), grant, issuance.

use std::net::IpAddr;

use crate::client_auth::{self, Credentials};
use crate::error::{ErrorCode, OAuthError};
use crate::form::Form;
use crate::grants::{self, GrantType};
use crate::issuer::{self, TokenResponse};
use crate::service::Authz;

/// The parts of an HTTP request the token endpoint looks at.
#[derive(Debug, Clone, Default)]
pub struct TokenRequest {
    pub authorization: Option<String>,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
    pub caller_ip: Option<IpAddr>,
}

/// The result, with what the log line needs.
pub struct Outcome {
    pub result: Result<TokenResponse, OAuthError>,
    pub client_id: Option<String>,
    pub grant_type: Option<&'static str>,
    /// Whether the client tried `Authorization: Basic`.
    pub used_basic: bool,
}

pub fn handle(authz: &Authz, req: &TokenRequest) -> Outcome {
    let mut out = Outcome {
        result: Err(OAuthError::server_error("unreachable")),
        client_id: None,
        grant_type: None,
        used_basic: req.authorization.is_some(),
    };
    out.result = run(authz, req, &mut out);
    out
}

fn run(authz: &Authz, req: &TokenRequest, out: &mut Outcome) -> Result<TokenResponse, OAuthError> {
    let form_type = req
        .content_type
        .as_deref()
        .and_then(|ct| ct.split(';').next())
        .map(|t| {
            t.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if form_type != Some(true) {
        return Err(OAuthError::invalid_request(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    let form = Form::parse(&req.body)?;
    let grant_type = GrantType::parse(form.require("grant_type")?)?;
    out.grant_type = Some(grant_type.as_str());

    let creds = client_auth::extract(req.authorization.as_deref(), &form)?;
    out.client_id = creds.claimed_client_id();
    let client = authenticate_throttled(authz, &creds, req.caller_ip, out.client_id.as_deref())?;

    let grant = grants::run(authz, grant_type, client.as_ref(), &form)?;
    out.client_id = Some(grant.client_id.clone());
    issuer::issue(authz, &grant)
}

/// Authenticate, refusing callers (by client id and by address) that failed too often lately,
/// and counting each new failure against both.
fn authenticate_throttled(
    authz: &Authz,
    creds: &Credentials,
    ip: Option<IpAddr>,
    client_id: Option<&str>,
) -> Result<Option<client_auth::AuthenticatedClient>, OAuthError> {
    if matches!(creds, Credentials::None { .. }) {
        return Ok(None);
    }
    let now = authz.clock.now();
    let keys: Vec<String> = ip
        .map(|ip| format!("ip:{ip}"))
        .into_iter()
        .chain(client_id.map(|c| format!("client:{c}")))
        .collect();
    if let Some(wait) = keys
        .iter()
        .filter_map(|k| authz.throttle.retry_after(k, now))
        .max()
    {
        let mut e = OAuthError::new(
            ErrorCode::TemporarilyUnavailable,
            "too many failed client authentications; try again later",
        );
        e.retry_after = Some(wait);
        return Err(e);
    }
    let result = client_auth::authenticate(authz, creds);
    if matches!(&result, Err(e) if e.code == ErrorCode::InvalidClient) {
        for k in &keys {
            authz.throttle.record_failure(k, now);
        }
    }
    result
}

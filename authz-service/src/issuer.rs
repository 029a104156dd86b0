//! The access-token issuer shared by every grant: it turns a decided `Grant` into a signed
//! RFC 9068 JWT, records it, and only then hands it out (so a token the client holds is always
//! known to storage).

use jwt_simple::prelude::*;

use crate::error::OAuthError;
use crate::keys::{SigningAlg, SigningKey};
use crate::service::Authz;
use crate::storage::IssuedToken;

/// What a grant decided: who the token speaks for, for which client, with which scopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub subject: String,
    pub client_id: String,
    pub scopes: Vec<String>,
    pub lifetime_secs: i64,
}

/// The successful token response (RFC 6749 §5.1).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: i64,
    pub scope: String,
    /// Only from the authorization code and refresh token grants (`flows::tokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
}

/// RFC 9068 claims beyond the registered ones.
#[derive(Debug, Serialize, Deserialize)]
struct AccessTokenClaims {
    client_id: String,
    scope: String,
}

pub fn issue(authz: &Authz, grant: &Grant) -> Result<TokenResponse, OAuthError> {
    issue_recorded(authz, grant).map(|(resp, _)| resp)
}

/// `issue`, also returning the token's `jti` (the browser flows link it to its grant).
pub fn issue_recorded(authz: &Authz, grant: &Grant) -> Result<(TokenResponse, String), OAuthError> {
    let now = authz.clock.now();
    let keys = authz.storage.keys()?;
    let record = crate::keys::current_signing_key(&keys, now)
        .ok_or_else(|| OAuthError::server_error("no signing key is active"))?;
    let key = authz.signing_key(record)?;

    let jti = crate::secrets::random_token(16)
        .map_err(|e| OAuthError::server_error(format!("no randomness: {e}")))?;
    let scope = grant.scopes.join(" ");
    let expires_at = now.saturating_add(grant.lifetime_secs);
    let ts = |t: i64| UnixTimeStamp::from_secs(u64::try_from(t).unwrap_or(0));
    let claims = JWTClaims {
        issued_at: Some(ts(now)),
        expires_at: Some(ts(expires_at)),
        invalid_before: None,
        issuer: Some(authz.config.issuer.clone()),
        subject: Some(grant.subject.clone()),
        audiences: Some(Audiences::AsString(authz.config.tokens.audience.clone())),
        jwt_id: Some(jti.clone()),
        nonce: None,
        custom: AccessTokenClaims {
            client_id: grant.client_id.clone(),
            scope: scope.clone(),
        },
    };
    let token = key
        .sign(claims, "at+jwt")
        .map_err(|e| OAuthError::server_error(format!("signing failed: {e}")))?;
    authz.storage.record_token(&IssuedToken {
        jti: jti.clone(),
        kid: record.kid.clone(),
        client_id: grant.client_id.clone(),
        subject: grant.subject.clone(),
        scope: scope.clone(),
        issued_at: now,
        expires_at,
    })?;
    let resp = TokenResponse {
        access_token: token,
        token_type: "Bearer".into(),
        expires_in: grant.lifetime_secs,
        scope,
        refresh_token: None,
    };
    Ok((resp, jti))
}

/// Parse a stored key (used by `Authz::signing_key`, which caches the result).
pub(crate) fn load_key(record: &crate::storage::KeyRecord) -> Result<SigningKey, OAuthError> {
    let alg: SigningAlg = record
        .alg
        .parse()
        .map_err(|e: String| OAuthError::server_error(e))?;
    SigningKey::from_der(alg, &record.private_der, &record.kid).map_err(OAuthError::server_error)
}

//! Token issuance for the grants of the browser flows: an access token linked to its grant (so
//! revoking the grant revokes it) and, for clients registered for it, a fresh refresh token.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::client_auth::AuthenticatedClient;
use crate::error::OAuthError;
use crate::issuer::{self, Grant, TokenResponse};
use crate::service::Authz;
use crate::storage::Client;
use crate::storage::flows::RefreshRecord;

pub const REFRESH_TOKEN: &str = "refresh_token";

/// How codes and refresh tokens are stored: SHA-256 (they carry 256 bits of entropy, so a fast
/// hash is enough and a leaked database holds nothing usable).
pub fn hash(secret: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(secret.as_bytes()))
}

pub fn random_secret() -> Result<String, OAuthError> {
    crate::secrets::random_token(32)
        .map_err(|e| OAuthError::server_error(format!("no randomness: {e}")))
}

/// The client making a code or refresh request: the authenticated one, or, for a public client
/// (which has no credentials), the one named by `client_id`. A confidential client must
/// authenticate.
pub fn requesting_client(
    authz: &Authz,
    authenticated: Option<&AuthenticatedClient>,
    claimed_id: Option<&str>,
) -> Result<Client, OAuthError> {
    if let Some(a) = authenticated {
        return Ok(a.client.clone());
    }
    let id = claimed_id
        .ok_or_else(|| OAuthError::invalid_client("client authentication is required"))?;
    match authz.storage.client(id)? {
        Some(c) if c.public => Ok(c),
        _ => Err(OAuthError::invalid_client(
            "client authentication is required",
        )),
    }
}

/// What to issue for one grant.
pub struct Issue<'a> {
    pub grant_id: &'a str,
    pub client: &'a Client,
    pub subject: &'a str,
    /// Scopes of the access token (may be fewer than the grant's on refresh).
    pub scopes: Vec<String>,
    /// Scopes the refresh token keeps (always the grant's).
    pub grant_scope: &'a str,
}

pub fn issue(authz: &Authz, what: Issue<'_>) -> Result<TokenResponse, OAuthError> {
    let grant = Grant {
        subject: what.subject.to_string(),
        client_id: what.client.id.clone(),
        scopes: what.scopes,
        lifetime_secs: crate::grants::lifetime(authz, what.client),
    };
    let (mut resp, jti) = issuer::issue_recorded(authz, &grant)?;
    // Linked before it is handed out: a token that can't be revoked with its grant is never seen.
    authz.storage.link_access_token(&jti, what.grant_id)?;
    if what.client.grant_types.iter().any(|g| g == REFRESH_TOKEN) {
        let token = random_secret()?;
        let now = authz.clock.now();
        authz.storage.insert_refresh(&RefreshRecord {
            token_hash: hash(&token),
            grant_id: what.grant_id.to_string(),
            client_id: what.client.id.clone(),
            subject: what.subject.to_string(),
            scope: what.grant_scope.to_string(),
            issued_at: now,
            expires_at: now.saturating_add(authz.config.browser.refresh_token_lifetime_secs),
        })?;
        resp.refresh_token = Some(token);
    }
    Ok(resp)
}

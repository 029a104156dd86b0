//! `grant_type=refresh_token` (RFC 6749 §6) with rotation: each refresh token works once and
//! is replaced by a new one. Presenting a spent one means two parties hold it: the whole grant
//! is revoked (RFC 9700 §4.14.2).

use crate::client_auth::AuthenticatedClient;
use crate::error::OAuthError;
use crate::form::Form;
use crate::grants::GrantType;
use crate::issuer::TokenResponse;
use crate::service::Authz;
use crate::storage::flows::RefreshUse;

use super::tokens::{self, Issue};

pub fn refresh(
    authz: &Authz,
    authenticated: Option<&AuthenticatedClient>,
    claimed_id: Option<&str>,
    form: &Form,
) -> Result<TokenResponse, OAuthError> {
    let client = tokens::requesting_client(authz, authenticated, claimed_id)?;
    crate::grants::ensure_allowed(&client, GrantType::RefreshToken)?;
    let token = form.require("refresh_token")?;
    let now = authz.clock.now();
    let rec = match authz.storage.consume_refresh(&tokens::hash(token), now)? {
        RefreshUse::Fresh(rec) => rec,
        RefreshUse::Unknown => return Err(OAuthError::invalid_grant("unknown refresh token")),
        RefreshUse::Revoked { .. } => {
            return Err(OAuthError::invalid_grant("the refresh token was revoked"));
        }
        RefreshUse::Reused { grant_id } => {
            authz.storage.revoke_grant(&grant_id, now)?;
            tracing::warn!(
                client = %client.id,
                "a rotated-away refresh token was used again: the grant is revoked"
            );
            return Err(OAuthError::invalid_grant(
                "the refresh token was already used; the grant is revoked",
            ));
        }
    };
    if rec.client_id != client.id {
        // Someone else's token: theirs is compromised too.
        authz.storage.revoke_grant(&rec.grant_id, now)?;
        return Err(OAuthError::invalid_grant(
            "the refresh token was issued to another client",
        ));
    }
    if rec.expires_at <= now {
        return Err(OAuthError::invalid_grant("the refresh token expired"));
    }
    let granted: Vec<String> = rec.scope.split(' ').map(String::from).collect();
    // RFC 6749 §6: a narrower scope may be asked, never a wider one.
    let scopes = crate::scope::resolve(form.get("scope"), &granted, &granted)?;
    tokens::issue(
        authz,
        Issue {
            grant_id: &rec.grant_id,
            client: &client,
            subject: &rec.subject,
            scopes,
            grant_scope: &rec.scope,
        },
    )
}

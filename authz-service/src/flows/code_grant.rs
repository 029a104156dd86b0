//! Authorization codes: issued after consent, exchanged once at the token endpoint
//! (RFC 6749 §4.1.3 with RFC 7636 §4.6). A code presented twice means it leaked: the grant it
//! started is revoked, with every token issued from it (RFC 6749 §4.1.2).

use crate::client_auth::AuthenticatedClient;
use crate::error::OAuthError;
use crate::form::Form;
use crate::grants::GrantType;
use crate::issuer::TokenResponse;
use crate::service::Authz;
use crate::storage::flows::{CodeRecord, CodeUse, GrantRecord};

use super::authorize::AuthorizationRequest;
use super::tokens::{self, Issue};

/// Start a grant for `subject` and return a new code for it.
pub fn issue_code(
    authz: &Authz,
    subject: &str,
    req: &AuthorizationRequest,
) -> Result<String, OAuthError> {
    let now = authz.clock.now();
    let grant_id = tokens::random_secret()?;
    let scope = req.scopes.join(" ");
    authz.storage.insert_grant(&GrantRecord {
        id: grant_id.clone(),
        client_id: req.client_id.clone(),
        subject: subject.to_string(),
        scope: scope.clone(),
        created_at: now,
    })?;
    let code = tokens::random_secret()?;
    authz.storage.insert_code(&CodeRecord {
        code_hash: tokens::hash(&code),
        grant_id,
        client_id: req.client_id.clone(),
        redirect_uri: req.redirect_uri.clone(),
        subject: subject.to_string(),
        scope,
        code_challenge: req.code_challenge.clone(),
        expires_at: now.saturating_add(authz.config.browser.code_lifetime_secs),
    })?;
    Ok(code)
}

/// `grant_type=authorization_code` at the token endpoint.
pub fn exchange(
    authz: &Authz,
    authenticated: Option<&AuthenticatedClient>,
    claimed_id: Option<&str>,
    form: &Form,
) -> Result<TokenResponse, OAuthError> {
    let client = tokens::requesting_client(authz, authenticated, claimed_id)?;
    crate::grants::ensure_allowed(&client, GrantType::AuthorizationCode)?;
    let code = form.require("code")?;
    let now = authz.clock.now();
    let rec = match authz.storage.consume_code(&tokens::hash(code), now)? {
        CodeUse::Fresh(rec) => rec,
        CodeUse::Unknown => return Err(OAuthError::invalid_grant("unknown authorization code")),
        CodeUse::Reused { grant_id } => {
            authz.storage.revoke_grant(&grant_id, now)?;
            tracing::warn!(
                client = %client.id,
                "authorization code used twice: its grant and every token from it are revoked"
            );
            return Err(OAuthError::invalid_grant(
                "the authorization code was already used",
            ));
        }
    };
    // The code is spent now, whatever follows: a failed attempt can't be retried with it.
    if rec.client_id != client.id {
        return Err(OAuthError::invalid_grant(
            "the authorization code was issued to another client",
        ));
    }
    if rec.expires_at <= now {
        return Err(OAuthError::invalid_grant("the authorization code expired"));
    }
    if form.get("redirect_uri") != Some(rec.redirect_uri.as_str()) {
        return Err(OAuthError::invalid_grant(
            "redirect_uri does not match the one of the authorization request",
        ));
    }
    match (&rec.code_challenge, form.get("code_verifier")) {
        (Some(challenge), Some(verifier)) => {
            super::pkce::verify(verifier, challenge).map_err(OAuthError::invalid_grant)?;
        }
        (Some(_), None) => {
            return Err(OAuthError::invalid_grant(
                "code_verifier is required: the authorization request had a code_challenge",
            ));
        }
        // RFC 9700 §2.1.1: a verifier for a code issued without a challenge is a downgrade.
        (None, Some(_)) => {
            return Err(OAuthError::invalid_grant(
                "code_verifier sent, but the authorization request had no code_challenge",
            ));
        }
        (None, None) => {}
    }
    if authz.storage.grant_revoked(&rec.grant_id)? {
        return Err(OAuthError::invalid_grant("the grant was revoked"));
    }
    tokens::issue(
        authz,
        Issue {
            grant_id: &rec.grant_id,
            client: &client,
            subject: &rec.subject,
            scopes: rec.scope.split(' ').map(String::from).collect(),
            grant_scope: &rec.scope,
        },
    )
}

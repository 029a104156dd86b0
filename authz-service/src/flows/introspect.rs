//! Token introspection (RFC 7662) for resource servers: any confidential, authenticated client
//! may ask; the answer for anything not currently valid is just `{"active": false}`, so it
//! tells nothing about tokens that don't work.

use serde_json::{Value, json};

use crate::client_auth::AuthenticatedClient;
use crate::error::OAuthError;
use crate::form::Form;
use crate::service::Authz;

use super::tokens;

pub fn introspect(
    authz: &Authz,
    caller: Option<&AuthenticatedClient>,
    form: &Form,
) -> Result<Value, OAuthError> {
    let caller = caller
        .ok_or_else(|| OAuthError::invalid_client("introspection needs client authentication"))?;
    if caller.client.public {
        return Err(OAuthError::invalid_client(
            "public clients may not introspect tokens",
        ));
    }
    let token = form.require("token")?;
    // The hint only orders the lookups (RFC 7662 §2.1); both kinds are always tried.
    let refresh_first = form.get("token_type_hint") == Some("refresh_token");
    let answer = if refresh_first {
        refresh(authz, token)?.or(access(authz, token)?)
    } else {
        access(authz, token)?.or(refresh(authz, token)?)
    };
    Ok(answer.unwrap_or_else(|| json!({"active": false})))
}

fn access(authz: &Authz, token: &str) -> Result<Option<Value>, OAuthError> {
    let Some(t) = super::verify::access_token(authz, token) else {
        return Ok(None);
    };
    if authz.storage.access_token_revoked(&t.jti)? {
        return Ok(None);
    }
    Ok(Some(json!({
        "active": true,
        "token_type": "Bearer",
        "scope": t.scope,
        "client_id": t.client_id,
        "sub": t.subject,
        "username": t.subject,
        "aud": authz.config.tokens.audience,
        "iss": authz.config.issuer,
        "iat": t.issued_at,
        "exp": t.expires_at,
        "jti": t.jti,
    })))
}

fn refresh(authz: &Authz, token: &str) -> Result<Option<Value>, OAuthError> {
    let Some(st) = authz.storage.refresh_state(&tokens::hash(token))? else {
        return Ok(None);
    };
    if st.used || st.revoked || st.record.expires_at <= authz.clock.now() {
        return Ok(None);
    }
    let r = st.record;
    Ok(Some(json!({
        "active": true,
        "token_type": "refresh_token",
        "scope": r.scope,
        "client_id": r.client_id,
        "sub": r.subject,
        "username": r.subject,
        "iss": authz.config.issuer,
        "iat": r.issued_at,
        "exp": r.expires_at,
    })))
}

//! Token revocation (RFC 7009). Revoking a refresh token revokes its whole grant (and so the
//! access tokens issued from it, §2.1); revoking an access token revokes that token. Unknown
//! or invalid tokens, and tokens of other clients, get the same 200 with nothing done: the
//! answer must not tell a caller which tokens exist.

use crate::client_auth::AuthenticatedClient;
use crate::error::OAuthError;
use crate::form::Form;
use crate::service::Authz;

use super::tokens;

/// What was revoked, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoked {
    Grant,
    AccessToken,
    Nothing,
}

pub fn revoke(
    authz: &Authz,
    authenticated: Option<&AuthenticatedClient>,
    claimed_id: Option<&str>,
    form: &Form,
) -> Result<Revoked, OAuthError> {
    let client = tokens::requesting_client(authz, authenticated, claimed_id)?;
    let token = form.require("token")?;
    // `token_type_hint` only orders lookups (§2.1); both kinds are tried regardless.
    let now = authz.clock.now();
    if let Some(st) = authz.storage.refresh_state(&tokens::hash(token))? {
        if st.record.client_id == client.id {
            authz.storage.revoke_grant(&st.record.grant_id, now)?;
            return Ok(Revoked::Grant);
        }
        return Ok(Revoked::Nothing);
    }
    if let Some(t) = super::verify::access_token(authz, token)
        && t.client_id == client.id
    {
        authz.storage.revoke_access_token(&t.jti, t.expires_at)?;
        return Ok(Revoked::AccessToken);
    }
    Ok(Revoked::Nothing)
}

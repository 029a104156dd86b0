//! `client_credentials` (RFC 6749 §4.4): a confidential client gets a token for itself.

use crate::client_auth::AuthenticatedClient;
use crate::error::OAuthError;
use crate::form::Form;
use crate::issuer::Grant;
use crate::service::Authz;

use super::{GrantType, ensure_allowed, lifetime};

pub fn run(
    authz: &Authz,
    client: Option<&AuthenticatedClient>,
    form: &Form,
) -> Result<Grant, OAuthError> {
    let client = &client
        .ok_or_else(|| OAuthError::invalid_client("client authentication is required"))?
        .client;
    if client.public {
        return Err(OAuthError::unauthorized_client(
            "a public client can't use client_credentials",
        ));
    }
    ensure_allowed(client, GrantType::ClientCredentials)?;
    let scopes = crate::scope::resolve(form.get("scope"), &client.scopes, &client.default_scopes)?;
    Ok(Grant {
        // RFC 9068 §2.2: with no resource owner, `sub` identifies the client.
        subject: client.id.clone(),
        client_id: client.id.clone(),
        scopes,
        lifetime_secs: lifetime(authz, client),
    })
}

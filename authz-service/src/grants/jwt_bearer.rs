//! The JWT bearer grant (RFC 7523 §2.1): a client presents an assertion it signed with a key it
//! registered; the token is for the assertion's `sub`, which must be the client itself or a
//! user of this server. Client authentication is optional (RFC 7521 §4.1), but if present it
//! must be the assertion's issuer.

use crate::client_auth::AuthenticatedClient;
use crate::error::OAuthError;
use crate::form::Form;
use crate::issuer::Grant;
use crate::service::Authz;

use super::{GrantType, ensure_allowed, lifetime};

pub fn run(
    authz: &Authz,
    authenticated: Option<&AuthenticatedClient>,
    form: &Form,
) -> Result<Grant, OAuthError> {
    let assertion = form.require("assertion")?;
    let issuer = crate::assertion::unverified_issuer(assertion)
        .ok_or_else(|| OAuthError::invalid_grant("the assertion has no readable `iss`"))?;
    let client = match authenticated {
        Some(a) if a.client.id != issuer => {
            return Err(OAuthError::invalid_grant(
                "the assertion was issued by another client than the authenticated one",
            ));
        }
        Some(a) => a.client.clone(),
        None => authz.storage.client(&issuer)?.ok_or_else(|| {
            OAuthError::invalid_grant(format!("assertion issuer `{issuer}` is not a known client"))
        })?,
    };
    ensure_allowed(&client, GrantType::JwtBearer)?;
    let checked = crate::assertion::verify(authz, assertion, &client, None)
        .map_err(|reason| OAuthError::invalid_grant(format!("invalid assertion: {reason}")))?;
    if checked.subject != client.id && authz.storage.user(&checked.subject)?.is_none() {
        return Err(OAuthError::invalid_grant(format!(
            "assertion subject `{}` is neither the client nor a known user",
            checked.subject
        )));
    }
    let scopes = crate::scope::resolve(form.get("scope"), &client.scopes, &client.default_scopes)?;
    Ok(Grant {
        subject: checked.subject,
        client_id: client.id.clone(),
        scopes,
        lifetime_secs: lifetime(authz, &client),
    })
}

//! Client authentication at the token endpoint (RFC 6749 §2.3, RFC 7523 §2.2):
//! `client_secret_basic`, `client_secret_post`, `private_key_jwt`, or none (public clients and
//! the JWT bearer grant, where the assertion speaks for the client).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::error::OAuthError;
use crate::form::Form;
use crate::service::Authz;
use crate::storage::Client;

pub const CLIENT_ASSERTION_TYPE_JWT: &str =
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
    PrivateKeyJwt,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::ClientSecretBasic => "client_secret_basic",
            AuthMethod::ClientSecretPost => "client_secret_post",
            AuthMethod::PrivateKeyJwt => "private_key_jwt",
        }
    }
}

/// What the request offers as client credentials, before anything is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// No authentication; `client_id` if the form names one.
    None { client_id: Option<String> },
    Secret {
        method: AuthMethod,
        client_id: String,
        secret: String,
    },
    Assertion {
        client_id: Option<String>,
        assertion: String,
    },
}

impl Credentials {
    /// The client id the request claims to be, for throttling and logs.
    pub fn claimed_client_id(&self) -> Option<String> {
        match self {
            Credentials::None { client_id } => client_id.clone(),
            Credentials::Secret { client_id, .. } => Some(client_id.clone()),
            Credentials::Assertion {
                client_id,
                assertion,
            } => client_id
                .clone()
                .or_else(|| crate::assertion::unverified_issuer(assertion)),
        }
    }
}

/// An authenticated client and how it proved itself.
#[derive(Debug, Clone)]
pub struct AuthenticatedClient {
    pub client: Client,
    pub method: AuthMethod,
}

/// Decode `Authorization: Basic`: base64 of `id:secret`, each form-urlencoded first
/// (RFC 6749 §2.3.1).
fn parse_basic(header: &str) -> Result<(String, String), OAuthError> {
    let bad = || OAuthError::invalid_client("malformed Basic authorization header");
    let (scheme, rest) = header.trim().split_once(' ').ok_or_else(bad)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(OAuthError::invalid_client(format!(
            "unsupported authorization scheme `{scheme}` (use Basic)"
        )));
    }
    let decoded = STANDARD.decode(rest.trim()).map_err(|_| bad())?;
    let text = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = text.split_once(':').ok_or_else(bad)?;
    let unescape = |s: &str| -> String {
        form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    let (id, secret) = (unescape(id), unescape(secret));
    if id.is_empty() {
        return Err(bad());
    }
    Ok((id, secret))
}

/// Work out which method the request uses. More than one is `invalid_request` (RFC 6749 §2.3).
pub fn extract(authorization: Option<&str>, form: &Form) -> Result<Credentials, OAuthError> {
    let basic = authorization.map(parse_basic).transpose()?;
    let post_secret = form.get("client_secret");
    let assertion_type = form.get("client_assertion_type");
    let assertion = form.get("client_assertion");
    let form_id = form.get("client_id").map(str::to_string);

    let used = [
        basic.is_some(),
        post_secret.is_some(),
        assertion.is_some() || assertion_type.is_some(),
    ]
    .iter()
    .filter(|b| **b)
    .count();
    if used > 1 {
        return Err(OAuthError::invalid_request(
            "more than one client authentication method was used",
        ));
    }
    if let Some((id, secret)) = basic {
        if form_id.as_deref().is_some_and(|f| f != id) {
            return Err(OAuthError::invalid_request(
                "`client_id` does not match the client in the Authorization header",
            ));
        }
        return Ok(Credentials::Secret {
            method: AuthMethod::ClientSecretBasic,
            client_id: id,
            secret,
        });
    }
    if let Some(secret) = post_secret {
        let client_id = form_id.ok_or_else(|| {
            OAuthError::invalid_request("`client_secret` was sent without `client_id`")
        })?;
        return Ok(Credentials::Secret {
            method: AuthMethod::ClientSecretPost,
            client_id,
            secret: secret.to_string(),
        });
    }
    match (assertion_type, assertion) {
        (Some(t), Some(a)) => {
            if t != CLIENT_ASSERTION_TYPE_JWT {
                return Err(OAuthError::invalid_client(format!(
                    "unsupported client_assertion_type `{t}`"
                )));
            }
            Ok(Credentials::Assertion {
                client_id: form_id,
                assertion: a.to_string(),
            })
        }
        (Some(_), None) => Err(OAuthError::invalid_request(
            "missing parameter `client_assertion`",
        )),
        (None, Some(_)) => Err(OAuthError::invalid_request(
            "missing parameter `client_assertion_type`",
        )),
        (None, None) => Ok(Credentials::None { client_id: form_id }),
    }
}

/// Check the credentials. `Ok(None)` means the request carried none.
pub fn authenticate(
    authz: &Authz,
    creds: &Credentials,
) -> Result<Option<AuthenticatedClient>, OAuthError> {
    match creds {
        Credentials::None { .. } => Ok(None),
        Credentials::Secret {
            method,
            client_id,
            secret,
        } => {
            let client = authz.storage.client(client_id)?;
            let stored = client.as_ref().and_then(|c| c.secret_hash.as_deref());
            // Always hash, even for an unknown client, so timing doesn't reveal which ids exist.
            if !authz.hasher.verify(secret, stored) {
                return Err(OAuthError::invalid_client("client authentication failed"));
            }
            match client {
                Some(client) => Ok(Some(AuthenticatedClient {
                    client,
                    method: *method,
                })),
                None => Err(OAuthError::invalid_client("client authentication failed")),
            }
        }
        Credentials::Assertion {
            client_id,
            assertion,
        } => {
            let id = client_id
                .clone()
                .or_else(|| crate::assertion::unverified_issuer(assertion))
                .ok_or_else(|| {
                    OAuthError::invalid_client("the client assertion names no client")
                })?;
            let client = authz
                .storage
                .client(&id)?
                .ok_or_else(|| OAuthError::invalid_client("client authentication failed"))?;
            crate::assertion::verify(authz, assertion, &client, Some(&id)).map_err(|reason| {
                OAuthError::invalid_client(format!("invalid client assertion: {reason}"))
            })?;
            Ok(Some(AuthenticatedClient {
                client,
                method: AuthMethod::PrivateKeyJwt,
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    fn basic(id: &str, secret: &str) -> String {
        format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let form = Form::parse(b"grant_type=client_credentials").unwrap();
        let c = extract(Some(&basic("my%20app", "s%3Ae+t")), &form).unwrap();
        assert_eq!(
            c,
            Credentials::Secret {
                method: AuthMethod::ClientSecretBasic,
                client_id: "my app".into(),
                secret: "s:e t".into()
            }
        );
    }

    #[test]
    fn two_methods_at_once_is_invalid_request() {
        let form = Form::parse(b"client_id=123&client_secret=secret").unwrap();
        let e = extract(Some(&basic("123", "secret")), &form).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
    }

    #[test]
    fn post_secret_and_assertion_are_recognised() {
        let form = Form::parse(b"client_id=123&client_secret=secret").unwrap();
        assert!(matches!(
            extract(None, &form).unwrap(),
            Credentials::Secret {
                method: AuthMethod::ClientSecretPost,
                ..
            }
        ));
        let form = Form::parse(
            b"client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=a.b.c",
        )
        .unwrap();
        assert!(matches!(
            extract(None, &form).unwrap(),
            Credentials::Assertion { .. }
        ));
        let form = Form::parse(b"client_assertion=a.b.c").unwrap();
        assert_eq!(
            extract(None, &form).unwrap_err().code,
            ErrorCode::InvalidRequest
        );
    }

    #[test]
    fn malformed_basic_is_invalid_client() {
        let form = Form::default();
        for h in ["Basic !!!", "Basic", "Bearer abc", &basic("", "x")] {
            assert_eq!(
                extract(Some(h), &form).unwrap_err().code,
                ErrorCode::InvalidClient,
                "{h}"
            );
        }
    }
}

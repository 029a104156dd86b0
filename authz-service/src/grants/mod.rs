//! Grant types of the token endpoint, one module each. A grant checks the request and decides
//! a `Grant`; `issuer::issue` turns it into a token. New grants (authorization code, refresh
//! token) plug in here.

pub mod client_credentials;
pub mod jwt_bearer;

use crate::client_auth::AuthenticatedClient;
use crate::error::{ErrorCode, OAuthError};
use crate::form::Form;
use crate::issuer::Grant;
use crate::service::Authz;
use crate::storage::Client;

pub const CLIENT_CREDENTIALS: &str = "client_credentials";
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
pub const AUTHORIZATION_CODE: &str = "authorization_code";
pub const REFRESH_TOKEN: &str = "refresh_token";

/// The grant types this server implements, in metadata order. `password` is deliberately
/// absent (RFC 9700 §2.4).
pub const SUPPORTED: &[&str] = &[
    AUTHORIZATION_CODE,
    REFRESH_TOKEN,
    CLIENT_CREDENTIALS,
    JWT_BEARER,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantType {
    ClientCredentials,
    JwtBearer,
    /// Handled by `flows::code_grant`.
    AuthorizationCode,
    /// Handled by `flows::refresh_grant`.
    RefreshToken,
}

impl GrantType {
    pub fn parse(s: &str) -> Result<GrantType, OAuthError> {
        match s {
            CLIENT_CREDENTIALS => Ok(GrantType::ClientCredentials),
            JWT_BEARER => Ok(GrantType::JwtBearer),
            AUTHORIZATION_CODE => Ok(GrantType::AuthorizationCode),
            REFRESH_TOKEN => Ok(GrantType::RefreshToken),
            other => Err(OAuthError::new(
                ErrorCode::UnsupportedGrantType,
                format!("grant type `{other}` is not supported"),
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            GrantType::ClientCredentials => CLIENT_CREDENTIALS,
            GrantType::JwtBearer => JWT_BEARER,
            GrantType::AuthorizationCode => AUTHORIZATION_CODE,
            GrantType::RefreshToken => REFRESH_TOKEN,
        }
    }
}

pub fn run(
    authz: &Authz,
    grant_type: GrantType,
    client: Option<&AuthenticatedClient>,
    form: &Form,
) -> Result<Grant, OAuthError> {
    match grant_type {
        GrantType::ClientCredentials => client_credentials::run(authz, client, form),
        GrantType::JwtBearer => jwt_bearer::run(authz, client, form),
        // The token endpoint sends these to `flows` before reaching here.
        GrantType::AuthorizationCode | GrantType::RefreshToken => Err(OAuthError::server_error(
            "this grant is handled by the browser flows",
        )),
    }
}

/// `unauthorized_client` unless the client registered this grant type.
pub(crate) fn ensure_allowed(client: &Client, grant_type: GrantType) -> Result<(), OAuthError> {
    if client.grant_types.iter().any(|g| g == grant_type.as_str()) {
        Ok(())
    } else {
        Err(OAuthError::unauthorized_client(format!(
            "client `{}` may not use the grant type `{}`",
            client.id,
            grant_type.as_str()
        )))
    }
}

pub(crate) fn lifetime(authz: &Authz, client: &Client) -> i64 {
    client
        .token_lifetime_secs
        .unwrap_or(authz.config.tokens.lifetime_secs)
}

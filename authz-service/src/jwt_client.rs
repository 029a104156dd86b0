//! The seed's JWT scripts as a small client: sign an assertion with a private key file and
//! exchange it at a token endpoint, either as client authentication (`private_key_jwt`,
//! RFC 7523 §2.2) or as the grant itself (JWT bearer, RFC 7523 §2.1).

use std::path::Path;

use jwt_simple::prelude::*;

use crate::client_auth::CLIENT_ASSERTION_TYPE_JWT;
use crate::grants::JWT_BEARER;

/// Which of the two uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `client_credentials`, the client authenticated by an assertion it signed.
    PrivateKeyJwt,
    /// The JWT bearer grant for `subject`.
    JwtBearer,
}

pub struct Request<'a> {
    pub mode: Mode,
    pub token_url: &'a str,
    /// `aud` of the assertion: the token endpoint's URL as the server knows it.
    pub audience: &'a str,
    pub client_id: &'a str,
    pub subject: &'a str,
    pub key_pem: &'a str,
    pub scope: Option<&'a str>,
}

/// Sign a short-lived assertion (2 minutes) with a fresh `jti`.
pub fn sign_assertion(
    key_pem: &str,
    issuer: &str,
    subject: &str,
    audience: &str,
) -> anyhow::Result<String> {
    let jti = crate::secrets::random_token(16)?;
    let claims = Claims::create(Duration::from_secs(120))
        .with_issuer(issuer)
        .with_subject(subject)
        .with_audience(audience)
        .with_jwt_id(jti);
    // The demo key is Ed25519; ES256 and RS256 keys work too.
    if let Ok(k) = Ed25519KeyPair::from_pem(key_pem) {
        return k.sign(claims);
    }
    if let Ok(k) = ES256KeyPair::from_pem(key_pem) {
        return k.sign(claims);
    }
    if let Ok(k) = RS256KeyPair::from_pem(key_pem) {
        return k.sign(claims);
    }
    anyhow::bail!("the key file holds no Ed25519, P-256 or RSA private key in PEM")
}

/// Build the token request form.
pub fn form(req: &Request<'_>) -> anyhow::Result<Vec<(&'static str, String)>> {
    let mut form = Vec::new();
    match req.mode {
        Mode::PrivateKeyJwt => {
            let a = sign_assertion(req.key_pem, req.client_id, req.client_id, req.audience)?;
            form.push(("grant_type", "client_credentials".to_string()));
            form.push((
                "client_assertion_type",
                CLIENT_ASSERTION_TYPE_JWT.to_string(),
            ));
            form.push(("client_assertion", a));
        }
        Mode::JwtBearer => {
            let a = sign_assertion(req.key_pem, req.client_id, req.subject, req.audience)?;
            form.push(("grant_type", JWT_BEARER.to_string()));
            form.push(("assertion", a));
        }
    }
    if let Some(s) = req.scope {
        form.push(("scope", s.to_string()));
    }
    Ok(form)
}

/// Send the request; returns the HTTP status and the JSON body.
pub async fn request_token(
    req: &Request<'_>,
    ca_cert: Option<&Path>,
) -> anyhow::Result<(u16, serde_json::Value)> {
    let mut builder = reqwest::Client::builder();
    if let Some(ca) = ca_cert {
        let pem = std::fs::read(ca)?;
        builder = builder.add_root_certificate(reqwest::Certificate::from_pem(&pem)?);
    }
    let resp = builder
        .build()?
        .post(req.token_url)
        .form(&form(req)?)
        .send()
        .await?;
    let status = resp.status().as_u16();
    Ok((status, resp.json().await?))
}

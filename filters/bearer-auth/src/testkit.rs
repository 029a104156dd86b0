//! Test support: real keys and real signed tokens (the harness's `TokenSigner`). Every claim is
//! written as raw JSON so tests can also sign claims of the wrong type.

use jwt_simple::prelude::*;
use serde_json::{Value, json};
use wasmgate_harness::TokenSigner;

pub const NOW: u64 = 1_800_000_000;
pub const ISSUER: &str = "https://localhost:8443";
pub const AUDIENCE: &str = "wasmgate-api";

/// The harness's signer with the unit tests' defaults: tokens valid around [`NOW`].
pub struct Signer(TokenSigner);

impl Signer {
    pub fn new(kid: &str) -> Self {
        Self(TokenSigner::new(kid))
    }

    pub fn jwk(&self) -> Value {
        self.0.jwk().unwrap()
    }

    /// The same key, signing tokens whose header names no `kid`.
    pub fn without_kid(&self) -> Self {
        Self(self.0.without_kid().unwrap())
    }

    pub fn public_key(&self) -> Vec<u8> {
        self.0.public_key()
    }

    /// Signs `claims` exactly as given, with `typ` in the header.
    pub fn sign(&self, claims: Value, typ: &str) -> String {
        self.0.sign(claims, typ).unwrap()
    }

    /// A good RFC 9068 access token with `scope`, valid around `NOW`.
    pub fn token(&self, scope: &str) -> String {
        self.sign(good_claims(scope), "at+jwt")
    }
}

pub fn good_claims(scope: &str) -> Value {
    json!({
        "iss": ISSUER, "sub": "bob", "aud": AUDIENCE, "client_id": "123", "scope": scope,
        "iat": NOW - 10, "exp": NOW + 300, "jti": "j1"
    })
}

pub fn jwks(signers: &[&Signer]) -> Vec<u8> {
    let keys: Vec<&TokenSigner> = signers.iter().map(|s| &s.0).collect();
    wasmgate_harness::jwks(&keys).unwrap().into_bytes()
}

pub fn b64(bytes: &[u8]) -> String {
    Base64UrlSafeNoPadding::encode_to_string(bytes).unwrap()
}

/// A token with any header and payload and a made-up signature: for shapes refused before the
/// signature is looked at.
pub fn unsigned(header: &Value, payload: &Value) -> String {
    format!(
        "{}.{}.{}",
        b64(header.to_string().as_bytes()),
        b64(payload.to_string().as_bytes()),
        b64(&[7u8; 64])
    )
}

pub fn config_json(extra: &str) -> String {
    format!(
        r#"{{"issuer": "{ISSUER}", "audiences": ["{AUDIENCE}"], "required_typ": "at+jwt",
            "jwks": {{"remote": {{"cluster": "authz", "path": "/.well-known/jwks.json"}}}}{extra}}}"#
    )
}

pub fn config(extra: &str) -> crate::config::Config {
    crate::config::Config::from_json(config_json(extra).as_bytes()).unwrap()
}

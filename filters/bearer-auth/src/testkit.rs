//! Test support: real keys and real signed tokens, made with jwt-simple's key generation.
//! Every claim is written as raw JSON so tests can also sign claims of the wrong type.

use jwt_simple::prelude::*;
use serde_json::{Map, Value, json};

pub const NOW: u64 = 1_800_000_000;
pub const ISSUER: &str = "https://localhost:8443";
pub const AUDIENCE: &str = "wasmgate-api";

pub struct Signer {
    pub kid: String,
    pub key: Ed25519KeyPair,
}

impl Signer {
    pub fn new(kid: &str) -> Self {
        Self {
            kid: kid.to_string(),
            key: Ed25519KeyPair::generate().with_key_id(kid),
        }
    }

    pub fn jwk(&self) -> Value {
        let x = Base64UrlSafeNoPadding::encode_to_string(self.key.public_key().to_bytes()).unwrap();
        json!({"kty": "OKP", "crv": "Ed25519", "kid": self.kid, "x": x, "use": "sig", "alg": "EdDSA"})
    }

    /// Signs `claims` exactly as given, with `typ` in the header.
    pub fn sign(&self, claims: Value, typ: &str) -> String {
        let map: Map<String, Value> = match claims {
            Value::Object(m) => m,
            _ => panic!("claims must be an object"),
        };
        let mut c = Claims::with_custom_claims(map, Duration::from_secs(1));
        c.issued_at = None;
        c.expires_at = None;
        c.invalid_before = None;
        let opts = HeaderOptions {
            signature_type: Some(typ.to_string()),
            ..HeaderOptions::default()
        };
        self.key.sign_with_options(c, &opts).unwrap()
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
    serde_json::to_vec(&json!({"keys": signers.iter().map(|s| s.jwk()).collect::<Vec<_>>()}))
        .unwrap()
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

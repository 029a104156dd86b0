//! Signing keys: creation, loading, signing, and the rotation rules.
//!
//! Rotation without downtime: a new key is published in the JWKS as soon as it is created but
//! signs only from `activates_at` (so every verifier has had time to fetch it); a key that has
//! been superseded stays published until the last token it signed has expired.

use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jwt_simple::prelude::*;
use serde_json::json;

use crate::storage::KeyRecord;

/// Signature algorithms we can sign access tokens with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SigningAlg {
    EdDSA,
    ES256,
    RS256,
}

impl SigningAlg {
    pub fn as_str(self) -> &'static str {
        match self {
            SigningAlg::EdDSA => "EdDSA",
            SigningAlg::ES256 => "ES256",
            SigningAlg::RS256 => "RS256",
        }
    }
}

impl FromStr for SigningAlg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "EdDSA" => Ok(SigningAlg::EdDSA),
            "ES256" => Ok(SigningAlg::ES256),
            "RS256" => Ok(SigningAlg::RS256),
            other => Err(format!(
                "unsupported signing algorithm `{other}` (expected EdDSA, ES256 or RS256)"
            )),
        }
    }
}

/// A loaded private key, ready to sign.
pub enum SigningKey {
    Ed(Ed25519KeyPair),
    Es(ES256KeyPair),
    Rs(Box<RS256KeyPair>),
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

impl SigningKey {
    pub fn generate(alg: SigningAlg) -> Result<SigningKey, String> {
        Ok(match alg {
            SigningAlg::EdDSA => SigningKey::Ed(Ed25519KeyPair::generate()),
            SigningAlg::ES256 => SigningKey::Es(ES256KeyPair::generate()),
            SigningAlg::RS256 => SigningKey::Rs(Box::new(
                RS256KeyPair::generate(2048).map_err(|e| e.to_string())?,
            )),
        })
    }

    pub fn from_der(alg: SigningAlg, der: &[u8], kid: &str) -> Result<SigningKey, String> {
        let e = |e: jwt_simple::Error| format!("key `{kid}`: {e}");
        Ok(match alg {
            SigningAlg::EdDSA => {
                SigningKey::Ed(Ed25519KeyPair::from_der(der).map_err(e)?.with_key_id(kid))
            }
            SigningAlg::ES256 => {
                SigningKey::Es(ES256KeyPair::from_der(der).map_err(e)?.with_key_id(kid))
            }
            SigningAlg::RS256 => SigningKey::Rs(Box::new(
                RS256KeyPair::from_der(der).map_err(e)?.with_key_id(kid),
            )),
        })
    }

    pub fn alg(&self) -> SigningAlg {
        match self {
            SigningKey::Ed(_) => SigningAlg::EdDSA,
            SigningKey::Es(_) => SigningAlg::ES256,
            SigningKey::Rs(_) => SigningAlg::RS256,
        }
    }

    pub fn to_der(&self) -> Result<Vec<u8>, String> {
        match self {
            SigningKey::Ed(k) => Ok(k.to_der()),
            SigningKey::Es(k) => k.to_der().map_err(|e| e.to_string()),
            SigningKey::Rs(k) => k.to_der().map_err(|e| e.to_string()),
        }
    }

    pub fn to_pem(&self) -> Result<String, String> {
        match self {
            // jwt-simple appends the public key as a second PEM block, which many tools
            // (Python's cryptography among them) refuse in a private key file.
            SigningKey::Ed(k) => Ok(pem_wrap("PRIVATE KEY", &k.to_der())),
            SigningKey::Es(k) => k.to_pem().map_err(|e| e.to_string()),
            SigningKey::Rs(k) => k.to_pem().map_err(|e| e.to_string()),
        }
    }

    /// RFC 7638 thumbprint of the public key: a stable, collision-free `kid`.
    pub fn thumbprint(&self) -> String {
        match self {
            SigningKey::Ed(k) => k.jwk_thumbprint(),
            SigningKey::Es(k) => k.jwk_thumbprint(),
            SigningKey::Rs(k) => k.jwk_thumbprint(),
        }
    }

    /// The public key as a JWK with `kid`, `alg` and `use`.
    pub fn public_jwk(&self, kid: &str) -> serde_json::Value {
        let alg = self.alg().as_str();
        match self {
            SigningKey::Ed(k) => json!({
                "kty": "OKP", "crv": "Ed25519", "x": b64(&k.public_key().to_bytes()),
                "kid": kid, "alg": alg, "use": "sig",
            }),
            SigningKey::Es(k) => {
                let point = k.public_key().public_key().to_bytes_uncompressed();
                // Uncompressed SEC1 point: 0x04 || x (32 bytes) || y (32 bytes).
                let x = point.get(1..33).unwrap_or_default();
                let y = point.get(33..65).unwrap_or_default();
                json!({
                    "kty": "EC", "crv": "P-256", "x": b64(x), "y": b64(y),
                    "kid": kid, "alg": alg, "use": "sig",
                })
            }
            SigningKey::Rs(k) => {
                let c = k.public_key().to_components();
                json!({
                    "kty": "RSA", "n": b64(&c.n), "e": b64(&c.e),
                    "kid": kid, "alg": alg, "use": "sig",
                })
            }
        }
    }

    /// Sign `claims` as a JWT with the given header `typ` (RFC 9068 uses `at+jwt`).
    pub fn sign<C: Serialize + serde::de::DeserializeOwned>(
        &self,
        claims: JWTClaims<C>,
        typ: &str,
    ) -> Result<String, String> {
        let opts = HeaderOptions {
            signature_type: Some(typ.to_string()),
            ..Default::default()
        };
        let r = match self {
            SigningKey::Ed(k) => k.sign_with_options(claims, &opts),
            SigningKey::Es(k) => k.sign_with_options(claims, &opts),
            SigningKey::Rs(k) => k.sign_with_options(claims, &opts),
        };
        r.map_err(|e| e.to_string())
    }
}

/// PEM armour (RFC 7468) around DER bytes.
fn pem_wrap(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A fresh key record for storage, published from `now`, signing from `activates_at`.
pub fn new_key_record(alg: SigningAlg, now: i64, activates_at: i64) -> Result<KeyRecord, String> {
    let key = SigningKey::generate(alg)?;
    let kid = key.thumbprint();
    Ok(KeyRecord {
        public_jwk: key.public_jwk(&kid),
        private_der: key.to_der()?,
        kid,
        alg: alg.as_str().to_string(),
        created_at: now,
        activates_at,
        last_token_exp: None,
    })
}

/// The key that signs at `now`: the most recently activated one (keys come oldest first).
pub fn current_signing_key(keys: &[KeyRecord], now: i64) -> Option<&KeyRecord> {
    keys.iter().rev().find(|k| k.activates_at <= now)
}

/// Where a key stands at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyState {
    /// Published, not signing yet.
    Pending,
    /// Published and signing.
    Active,
    /// Superseded, published while tokens it signed are still valid.
    Retiring,
    /// Superseded and no valid token left: unpublished, safe to delete.
    Retired,
}

pub fn key_state(keys: &[KeyRecord], key: &KeyRecord, now: i64) -> KeyState {
    if key.activates_at > now {
        return KeyState::Pending;
    }
    if current_signing_key(keys, now).map(|k| &k.kid) == Some(&key.kid) {
        return KeyState::Active;
    }
    match key.last_token_exp {
        Some(exp) if exp >= now => KeyState::Retiring,
        _ => KeyState::Retired,
    }
}

/// The JWKS document: every key that is pending, active or retiring.
pub fn jwks(keys: &[KeyRecord], now: i64) -> serde_json::Value {
    let published: Vec<&serde_json::Value> = keys
        .iter()
        .filter(|k| key_state(keys, k, now) != KeyState::Retired)
        .map(|k| &k.public_jwk)
        .collect();
    json!({ "keys": published })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(kid: &str, activates_at: i64, last_exp: Option<i64>) -> KeyRecord {
        KeyRecord {
            kid: kid.into(),
            alg: "EdDSA".into(),
            private_der: vec![],
            public_jwk: json!({"kid": kid}),
            created_at: 0,
            activates_at,
            last_token_exp: last_exp,
        }
    }

    #[test]
    fn rotation_publishes_before_use_and_keeps_old_key_while_its_tokens_live() {
        // k1 active since 0 and signed a token valid until 150; k2 created to activate at 100.
        let keys = vec![rec("k1", 0, Some(150)), rec("k2", 100, None)];
        assert_eq!(current_signing_key(&keys, 50).unwrap().kid, "k1");
        assert_eq!(key_state(&keys, &keys[1], 50), KeyState::Pending);
        assert_eq!(jwks(&keys, 50)["keys"].as_array().unwrap().len(), 2);
        // After activation, k2 signs and k1 is retiring until 150.
        assert_eq!(current_signing_key(&keys, 100).unwrap().kid, "k2");
        assert_eq!(key_state(&keys, &keys[0], 120), KeyState::Retiring);
        assert_eq!(jwks(&keys, 150)["keys"].as_array().unwrap().len(), 2);
        // After its last token expired, k1 leaves the JWKS.
        assert_eq!(key_state(&keys, &keys[0], 151), KeyState::Retired);
        assert_eq!(jwks(&keys, 151)["keys"], json!([{"kid": "k2"}]));
    }

    #[test]
    fn no_key_signs_before_the_first_activation() {
        let keys = vec![rec("k1", 10, None)];
        assert!(current_signing_key(&keys, 9).is_none());
    }

    #[test]
    fn ed25519_pem_is_one_private_key_block() {
        let key = SigningKey::generate(SigningAlg::EdDSA).unwrap();
        let pem = key.to_pem().unwrap();
        assert_eq!(pem.matches("-----BEGIN").count(), 1, "{pem}");
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let back = Ed25519KeyPair::from_pem(&pem).unwrap();
        assert_eq!(back.jwk_thumbprint(), key.thumbprint());
    }

    #[test]
    fn every_algorithm_round_trips_through_der_and_signs_verifiably() {
        for alg in [SigningAlg::EdDSA, SigningAlg::ES256, SigningAlg::RS256] {
            let r = new_key_record(alg, 0, 0).unwrap();
            let key = SigningKey::from_der(alg, &r.private_der, &r.kid).unwrap();
            assert_eq!(key.thumbprint(), r.kid);
            let claims = Claims::create(Duration::from_secs(60)).with_subject("s");
            let token = key.sign(claims, "at+jwt").unwrap();
            let meta = Token::decode_metadata(&token).unwrap();
            assert_eq!(meta.algorithm(), alg.as_str());
            assert_eq!(meta.signature_type(), Some("at+jwt"));
            assert_eq!(meta.key_id(), Some(r.kid.as_str()));
            // The published JWK verifies the token.
            let v = crate::jwk::VerifyingKey::from_jwk(&r.public_jwk).unwrap();
            let c = v.verify(&token, VerificationOptions::default()).unwrap();
            assert_eq!(c.subject.as_deref(), Some("s"));
        }
    }
}

//! Public keys registered by clients (a JWKS document), used to check their JWT assertions.

use jwt_simple::prelude::*;
use serde_json::{Value, json};

/// One public key a client registered.
pub enum VerifyingKey {
    Ed(Ed25519PublicKey),
    Es(ES256PublicKey),
    Rs(Box<RS256PublicKey>),
}

fn member<'a>(jwk: &'a Value, name: &str) -> Result<&'a str, String> {
    jwk.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("JWK lacks `{name}`"))
}

impl VerifyingKey {
    /// Import a public JWK. Only the members that define the key are passed on to the strict
    /// importer (`kid`, `use`, `alg`, `key_ops`... are ours to interpret).
    pub fn from_jwk(jwk: &Value) -> Result<VerifyingKey, String> {
        let kty = member(jwk, "kty")?;
        let e = |e: jwt_simple::Error| format!("bad {kty} JWK: {e}");
        match kty {
            "OKP" => {
                let crv = member(jwk, "crv")?;
                if crv != "Ed25519" {
                    return Err(format!("unsupported OKP curve `{crv}`"));
                }
                let doc = json!({"kty": "OKP", "crv": crv, "x": member(jwk, "x")?}).to_string();
                Ok(VerifyingKey::Ed(
                    Ed25519PublicKey::from_jwk(&doc).map_err(e)?,
                ))
            }
            "EC" => {
                let crv = member(jwk, "crv")?;
                if crv != "P-256" {
                    return Err(format!("unsupported EC curve `{crv}`"));
                }
                let doc = json!({"kty": "EC", "crv": crv, "x": member(jwk, "x")?, "y": member(jwk, "y")?})
                    .to_string();
                Ok(VerifyingKey::Es(ES256PublicKey::from_jwk(&doc).map_err(e)?))
            }
            "RSA" => {
                let doc = json!({"kty": "RSA", "n": member(jwk, "n")?, "e": member(jwk, "e")?})
                    .to_string();
                Ok(VerifyingKey::Rs(Box::new(
                    RS256PublicKey::from_jwk(&doc).map_err(e)?,
                )))
            }
            other => Err(format!("unsupported key type `{other}`")),
        }
    }

    /// The one JWS algorithm this key may verify (no algorithm confusion).
    pub fn alg(&self) -> &'static str {
        match self {
            VerifyingKey::Ed(_) => "EdDSA",
            VerifyingKey::Es(_) => "ES256",
            VerifyingKey::Rs(_) => "RS256",
        }
    }

    /// Verify the signature and the time/issuer/audience rules in `opts`.
    pub fn verify(
        &self,
        token: &str,
        opts: VerificationOptions,
    ) -> Result<JWTClaims<NoCustomClaims>, String> {
        let r = match self {
            VerifyingKey::Ed(k) => k.verify_token::<NoCustomClaims>(token, Some(opts)),
            VerifyingKey::Es(k) => k.verify_token::<NoCustomClaims>(token, Some(opts)),
            VerifyingKey::Rs(k) => k.verify_token::<NoCustomClaims>(token, Some(opts)),
        };
        r.map_err(|e| e.to_string())
    }
}

/// The keys of a registered JWKS that could have signed a token with this header: the one with
/// the token's `kid` if it names one, else every key of the token's algorithm. Keys marked for
/// another use (`use` other than `sig`) or unreadable are skipped.
pub fn candidate_keys(jwks: &Value, kid: Option<&str>, alg: &str) -> Vec<VerifyingKey> {
    let Some(keys) = jwks.get("keys").and_then(Value::as_array) else {
        return Vec::new();
    };
    keys.iter()
        .filter(|k| {
            k.get("use")
                .and_then(Value::as_str)
                .is_none_or(|u| u == "sig")
        })
        .filter(|k| match kid {
            Some(kid) => k.get("kid").and_then(Value::as_str) == Some(kid),
            None => true,
        })
        .filter(|k| {
            k.get("alg")
                .and_then(Value::as_str)
                .is_none_or(|a| a == alg)
        })
        .filter_map(|k| VerifyingKey::from_jwk(k).ok())
        .filter(|k| k.alg() == alg)
        .collect()
}

/// Check that a JWKS a client wants to register is usable: an object with a `keys` array whose
/// every key we can import.
pub fn validate_jwks(jwks: &Value) -> Result<(), String> {
    let keys = jwks
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("a JWKS must be an object with a `keys` array")?;
    if keys.is_empty() {
        return Err("the JWKS has no keys".into());
    }
    for (i, k) in keys.iter().enumerate() {
        VerifyingKey::from_jwk(k).map_err(|e| format!("keys[{i}]: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{SigningAlg, SigningKey};

    #[test]
    fn picks_keys_by_kid_and_algorithm() {
        let ed = SigningKey::generate(SigningAlg::EdDSA).unwrap();
        let es = SigningKey::generate(SigningAlg::ES256).unwrap();
        let jwks = json!({"keys": [ed.public_jwk("a"), es.public_jwk("b")]});
        assert!(validate_jwks(&jwks).is_ok());
        assert_eq!(candidate_keys(&jwks, Some("a"), "EdDSA").len(), 1);
        // The kid names an ES256 key: an EdDSA header can't use it.
        assert_eq!(candidate_keys(&jwks, Some("b"), "EdDSA").len(), 0);
        assert_eq!(candidate_keys(&jwks, None, "ES256").len(), 1);
        assert_eq!(candidate_keys(&jwks, None, "HS256").len(), 0);
        assert_eq!(candidate_keys(&jwks, Some("zzz"), "EdDSA").len(), 0);
    }

    #[test]
    fn rejects_unusable_jwks() {
        assert!(validate_jwks(&json!({})).is_err());
        assert!(validate_jwks(&json!({"keys": []})).is_err());
        assert!(validate_jwks(&json!({"keys": [{"kty": "oct", "k": "AA"}]})).is_err());
        assert!(
            validate_jwks(&json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "short"}]}))
                .is_err()
        );
    }
}

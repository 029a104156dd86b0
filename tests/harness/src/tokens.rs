//! Test tokens: an Ed25519 key that signs JWTs carrying exactly the claims a test writes (so a
//! test can also sign claims of the wrong type, or leave one out), and its public JWK as the
//! authz-service publishes it. Shared by the filters' tests, which sign what bearer-auth verifies.

use jwt_simple::prelude::{
    Base64UrlSafeNoPadding, Claims, Duration, Ed25519KeyPair, EdDSAKeyPairLike, HeaderOptions,
};
use jwt_simple::reexports::ct_codecs::Encoder;
use serde_json::{Value, json};

use crate::error::{Error, Result};

/// A signing key with its key id.
pub struct TokenSigner {
    kid: String,
    key: Ed25519KeyPair,
}

impl TokenSigner {
    /// A new random key named `kid`.
    pub fn new(kid: &str) -> Self {
        Self {
            kid: kid.to_owned(),
            key: Ed25519KeyPair::generate().with_key_id(kid),
        }
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The same key, signing tokens whose header names no `kid`.
    pub fn without_kid(&self) -> Result<Self> {
        let key = Ed25519KeyPair::from_bytes(&self.key.to_bytes())
            .map_err(|e| Error::Signing(e.to_string()))?;
        Ok(Self {
            kid: self.kid.clone(),
            key,
        })
    }

    /// The raw public key (32 bytes), e.g. for an attack that misuses it as an HMAC secret.
    pub fn public_key(&self) -> Vec<u8> {
        self.key.public_key().to_bytes()
    }

    /// The public key as a JWK (RFC 8037 `OKP`/`Ed25519`, `alg` EdDSA, `use` sig).
    pub fn jwk(&self) -> Result<Value> {
        let x = Base64UrlSafeNoPadding::encode_to_string(self.public_key())
            .map_err(|e| Error::Signing(e.to_string()))?;
        Ok(
            json!({"kty": "OKP", "crv": "Ed25519", "kid": self.kid, "x": x,
                  "alg": "EdDSA", "use": "sig"}),
        )
    }

    /// A JWKS holding this key alone.
    pub fn jwks(&self) -> Result<String> {
        jwks(&[self])
    }

    /// A compact JWS of `claims` (a JSON object, written as given: no claim is added) with `typ`
    /// in the header (`at+jwt` for an RFC 9068 access token).
    pub fn sign(&self, claims: Value, typ: &str) -> Result<String> {
        let Value::Object(map) = claims else {
            return Err(Error::Signing(format!(
                "claims must be an object: {claims}"
            )));
        };
        // jwt-simple adds iat/exp/nbf of its own; the test's claims are the only ones wanted.
        let mut claims = Claims::with_custom_claims(map, Duration::from_secs(1));
        claims.issued_at = None;
        claims.expires_at = None;
        claims.invalid_before = None;
        let header = HeaderOptions {
            signature_type: Some(typ.to_owned()),
            ..HeaderOptions::default()
        };
        self.key
            .sign_with_options(claims, &header)
            .map_err(|e| Error::Signing(e.to_string()))
    }

    /// An RFC 9068 access token (`typ` `at+jwt`) with `claims`.
    pub fn access_token(&self, claims: Value) -> Result<String> {
        self.sign(claims, "at+jwt")
    }
}

/// A JWKS of `signers`' public keys, in order.
pub fn jwks(signers: &[&TokenSigner]) -> Result<String> {
    let keys = signers
        .iter()
        .map(|s| s.jwk())
        .collect::<Result<Vec<_>>>()?;
    Ok(json!({ "keys": keys }).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jwt_simple::prelude::{
        Ed25519PublicKey, EdDSAPublicKeyLike, JWTClaims, NoCustomClaims, VerificationOptions,
    };
    use jwt_simple::reexports::ct_codecs::Decoder;

    #[test]
    fn tokens_carry_exactly_the_claims_given_and_verify_against_the_jwk() {
        let signer = TokenSigner::new("k1");
        let token = signer
            .access_token(json!({"sub": "bob", "exp": 4_000_000_000_u64, "scope": 7}))
            .unwrap();
        let part = |i: usize| -> Value {
            let b64 = token.split('.').nth(i).unwrap();
            let bytes = Base64UrlSafeNoPadding::decode_to_vec(b64, None).unwrap();
            serde_json::from_slice(&bytes).unwrap()
        };
        assert_eq!(part(0)["typ"], "at+jwt");
        assert_eq!(part(0)["kid"], "k1");
        assert_eq!(
            part(1),
            json!({"sub": "bob", "exp": 4_000_000_000_u64, "scope": 7})
        );
        let jwk = signer.jwk().unwrap();
        let x = Base64UrlSafeNoPadding::decode_to_vec(jwk["x"].as_str().unwrap(), None).unwrap();
        let key = Ed25519PublicKey::from_bytes(&x).unwrap();
        let verified: JWTClaims<NoCustomClaims> = key
            .verify_token(&token, Some(VerificationOptions::default()))
            .unwrap();
        assert_eq!(verified.subject.as_deref(), Some("bob"));
        let set: Value =
            serde_json::from_str(&jwks(&[&signer, &TokenSigner::new("k2")]).unwrap()).unwrap();
        assert_eq!(set["keys"][1]["kid"], "k2");
        assert!(signer.sign(json!([1]), "JWT").is_err());
    }
}

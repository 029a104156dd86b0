//! JWKS documents (RFC 7517) turned into ready-to-use verification keys.
//!
//! Keys are built once per document (not per request): building an RSA key or decompressing an
//! EC point costs more than a lookup. A key the filter cannot use (unknown `kty`, `use: enc`, a
//! broken member) is skipped with a warning rather than failing the whole set, so one odd key
//! published by the issuer does not take the others down; a document with no usable key at all
//! is an error, and the caller keeps the last good set.

use std::collections::HashMap;
use std::fmt;

use jwt_simple::prelude::{
    ES256PublicKey, ES384PublicKey, Ed25519PublicKey, RS256PublicKey, RS384PublicKey,
    RS512PublicKey,
};
use serde::Deserialize;

use crate::b64::decode_url;

/// Larger documents are refused before parsing: a JWKS holds a handful of keys.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;
/// More keys than this is not a key set, it is an attack on our memory.
const MAX_KEYS: usize = 64;

/// The verification key for one JWK, of the type its `kty`/`crv` say.
#[derive(Clone)]
pub enum PublicKey {
    Ed25519(Ed25519PublicKey),
    Es256(ES256PublicKey),
    Es384(ES384PublicKey),
    /// RSA keys serve the three RS* algorithms; which ones a key may use is in `Key::algs`.
    /// Boxed: three RSA keys are much larger than the other variants.
    Rsa(Box<RsaKeys>),
}

#[derive(Clone)]
pub struct RsaKeys {
    pub rs256: RS256PublicKey,
    pub rs384: RS384PublicKey,
    pub rs512: RS512PublicKey,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            PublicKey::Ed25519(_) => "Ed25519",
            PublicKey::Es256(_) => "P-256",
            PublicKey::Es384(_) => "P-384",
            PublicKey::Rsa(_) => "RSA",
        };
        f.write_str(kind)
    }
}

/// One usable key: its id, the algorithms it may verify, the key itself.
#[derive(Debug, Clone)]
pub struct Key {
    pub kid: Option<String>,
    /// Algorithms this key accepts: the JWK's `alg` if it names one, else all its type allows.
    pub algs: &'static [&'static str],
    pub key: PublicKey,
}

impl Key {
    pub fn accepts(&self, alg: &str) -> bool {
        self.algs.contains(&alg)
    }
}

/// A parsed key set.
#[derive(Debug, Clone, Default)]
pub struct KeySet {
    keys: Vec<Key>,
    by_kid: HashMap<String, usize>,
}

impl KeySet {
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn by_kid(&self, kid: &str) -> Option<&Key> {
        self.by_kid.get(kid).and_then(|&i| self.keys.get(i))
    }

    /// Keys that accept `alg`: used when a token carries no `kid`.
    pub fn accepting<'a>(&'a self, alg: &'a str) -> impl Iterator<Item = &'a Key> + 'a {
        self.keys.iter().filter(move |k| k.accepts(alg))
    }
}

/// Why a JWKS document was refused as a whole.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksError {
    TooLarge(usize),
    NotJson(String),
    NoUsableKeys(Vec<String>),
}

impl fmt::Display for JwksError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwksError::TooLarge(n) => {
                write!(f, "JWKS document of {n} bytes is over {MAX_JWKS_BYTES}")
            }
            JwksError::NotJson(e) => write!(f, "JWKS document is not a JSON key set: {e}"),
            JwksError::NoUsableKeys(w) if w.is_empty() => write!(f, "JWKS document has no keys"),
            JwksError::NoUsableKeys(w) => {
                write!(f, "JWKS document has no usable key ({})", w.join("; "))
            }
        }
    }
}

/// A parsed set and the keys that were skipped (for the log).
#[derive(Debug)]
pub struct Parsed {
    pub set: KeySet,
    pub skipped: Vec<String>,
}

#[derive(Deserialize)]
struct RawSet {
    keys: Vec<serde_json::Value>,
}

/// Only the members we use; other members (x5c, key_ops…) are allowed and ignored, as RFC 7517
/// asks of implementations that do not understand them.
#[derive(Deserialize)]
struct RawKey {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default, rename = "use")]
    use_: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
}

/// Parses a JWKS document fetched from the issuer.
pub fn parse_jwks(bytes: &[u8]) -> Result<Parsed, JwksError> {
    if bytes.len() > MAX_JWKS_BYTES {
        return Err(JwksError::TooLarge(bytes.len()));
    }
    let raw: RawSet =
        serde_json::from_slice(bytes).map_err(|e| JwksError::NotJson(e.to_string()))?;
    let mut set = KeySet::default();
    let mut skipped = Vec::new();
    for (i, value) in raw.keys.into_iter().enumerate() {
        if set.keys.len() >= MAX_KEYS {
            skipped.push(format!("keys after the first {MAX_KEYS} ignored"));
            break;
        }
        let label = value
            .get("kid")
            .and_then(|k| k.as_str())
            .map_or_else(|| format!("keys[{i}]"), |k| format!("kid {k:?}"));
        let key = serde_json::from_value::<RawKey>(value)
            .map_err(|e| e.to_string())
            .and_then(build_key);
        match key {
            Ok(key) => {
                if let Some(kid) = &key.kid {
                    if set.by_kid.contains_key(kid) {
                        skipped.push(format!("{label}: duplicate kid, first one kept"));
                        continue;
                    }
                    set.by_kid.insert(kid.clone(), set.keys.len());
                }
                set.keys.push(key);
            }
            Err(reason) => skipped.push(format!("{label}: {reason}")),
        }
    }
    if set.keys.is_empty() {
        return Err(JwksError::NoUsableKeys(skipped));
    }
    Ok(Parsed { set, skipped })
}

/// A key set written in the configuration: same rules, but any skipped key is an error, since
/// the operator can fix it right away.
pub fn parse_inline_jwks(bytes: &[u8]) -> Result<KeySet, JwksError> {
    let parsed = parse_jwks(bytes)?;
    if !parsed.skipped.is_empty() {
        return Err(JwksError::NoUsableKeys(parsed.skipped));
    }
    Ok(parsed.set)
}

const ED_ALGS: &[&str] = &["EdDSA"];
const ES256_ALGS: &[&str] = &["ES256"];
const ES384_ALGS: &[&str] = &["ES384"];
const RSA_ALGS: &[&str] = &["RS256", "RS384", "RS512"];

fn build_key(raw: RawKey) -> Result<Key, String> {
    if let Some(u) = &raw.use_
        && u != "sig"
    {
        return Err(format!("use {u:?} is not \"sig\""));
    }
    let member = |v: &Option<String>, name: &str| -> Result<Vec<u8>, String> {
        let s = v
            .as_deref()
            .ok_or_else(|| format!("member `{name}` missing"))?;
        decode_url(s).ok_or_else(|| format!("member `{name}` is not base64url"))
    };
    let (key, type_algs): (PublicKey, &'static [&'static str]) =
        match (raw.kty.as_str(), raw.crv.as_deref()) {
            ("OKP", Some("Ed25519")) => {
                let x = member(&raw.x, "x")?;
                let pk = Ed25519PublicKey::from_bytes(&x).map_err(|e| e.to_string())?;
                (PublicKey::Ed25519(pk), ED_ALGS)
            }
            ("EC", Some(crv @ ("P-256" | "P-384"))) => {
                let x = member(&raw.x, "x")?;
                let y = member(&raw.y, "y")?;
                let size = if crv == "P-256" { 32 } else { 48 };
                if x.len() != size || y.len() != size {
                    return Err(format!("coordinates of a {crv} key must be {size} bytes"));
                }
                // SEC1 uncompressed point: 0x04 || x || y.
                let mut point = Vec::with_capacity(1 + 2 * size);
                point.push(0x04);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                if crv == "P-256" {
                    let pk = ES256PublicKey::from_bytes(&point).map_err(|e| e.to_string())?;
                    (PublicKey::Es256(pk), ES256_ALGS)
                } else {
                    let pk = ES384PublicKey::from_bytes(&point).map_err(|e| e.to_string())?;
                    (PublicKey::Es384(pk), ES384_ALGS)
                }
            }
            ("RSA", _) => {
                let n = member(&raw.n, "n")?;
                let e = member(&raw.e, "e")?;
                let err = |e: jwt_simple::Error| e.to_string();
                (
                    PublicKey::Rsa(Box::new(RsaKeys {
                        rs256: RS256PublicKey::from_components(&n, &e).map_err(err)?,
                        rs384: RS384PublicKey::from_components(&n, &e).map_err(err)?,
                        rs512: RS512PublicKey::from_components(&n, &e).map_err(err)?,
                    })),
                    RSA_ALGS,
                )
            }
            (kty, crv) => {
                return Err(format!(
                    "unsupported key type {kty:?}{}",
                    crv.map(|c| format!(" curve {c:?}")).unwrap_or_default()
                ));
            }
        };
    // A JWK that names its algorithm may only be used with that one (RFC 7517 §4.4).
    let algs = match &raw.alg {
        None => type_algs,
        Some(alg) => match type_algs.iter().position(|a| a == alg) {
            Some(i) => type_algs.get(i..=i).unwrap_or(type_algs),
            None => return Err(format!("alg {alg:?} does not fit a {:?} key", key)),
        },
    };
    Ok(Key {
        kid: raw.kid,
        algs,
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jwt_simple::prelude::*;

    fn ed_jwk(kid: &str) -> serde_json::Value {
        let kp = Ed25519KeyPair::generate();
        let x = Base64UrlSafeNoPadding::encode_to_string(kp.public_key().to_bytes()).unwrap();
        serde_json::json!({"kty":"OKP","crv":"Ed25519","kid":kid,"x":x,"use":"sig","alg":"EdDSA"})
    }

    fn doc(keys: Vec<serde_json::Value>) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({ "keys": keys })).unwrap()
    }

    #[test]
    fn keys_are_found_by_kid() {
        let p = parse_jwks(&doc(vec![ed_jwk("a"), ed_jwk("b")])).unwrap();
        assert_eq!(p.set.len(), 2);
        assert!(
            p.set
                .by_kid("b")
                .is_some_and(|k| k.accepts("EdDSA") && !k.accepts("RS256"))
        );
        assert!(p.set.by_kid("c").is_none());
    }

    #[test]
    fn an_odd_key_is_skipped_not_fatal() {
        let odd = serde_json::json!({"kty":"oct","kid":"s","k":"AAAA"});
        let enc = serde_json::json!({"kty":"OKP","crv":"Ed25519","kid":"e","x":"AAAA","use":"enc"});
        let p = parse_jwks(&doc(vec![odd, enc, ed_jwk("a")])).unwrap();
        assert_eq!(p.set.len(), 1);
        assert_eq!(p.skipped.len(), 2, "{:?}", p.skipped);
        assert!(
            parse_inline_jwks(&doc(vec![ed_jwk("a"), serde_json::json!({"kty":"oct"})])).is_err()
        );
    }

    #[test]
    fn ec_and_rsa_keys_parse() {
        let ec = ES256KeyPair::generate();
        let point = ec.public_key().public_key().to_bytes_uncompressed();
        let x = Base64UrlSafeNoPadding::encode_to_string(&point[1..33]).unwrap();
        let y = Base64UrlSafeNoPadding::encode_to_string(&point[33..]).unwrap();
        let rsa = RS256KeyPair::generate(2048).unwrap();
        let c = rsa.public_key().to_components();
        let n = Base64UrlSafeNoPadding::encode_to_string(&c.n).unwrap();
        let e = Base64UrlSafeNoPadding::encode_to_string(&c.e).unwrap();
        let p = parse_jwks(&doc(vec![
            serde_json::json!({"kty":"EC","crv":"P-256","kid":"ec","x":x,"y":y}),
            serde_json::json!({"kty":"RSA","kid":"rsa","n":n,"e":e,"alg":"RS384"}),
        ]))
        .unwrap();
        assert!(p.skipped.is_empty(), "{:?}", p.skipped);
        assert!(
            p.set
                .by_kid("ec")
                .is_some_and(|k| k.accepts("ES256") && !k.accepts("ES384"))
        );
        let r = p.set.by_kid("rsa").unwrap();
        assert!(r.accepts("RS384") && !r.accepts("RS256"));
    }

    #[test]
    fn alg_that_does_not_fit_the_key_type_is_skipped() {
        let mut k = ed_jwk("a");
        k["alg"] = "RS256".into();
        assert!(matches!(
            parse_jwks(&doc(vec![k])),
            Err(JwksError::NoUsableKeys(_))
        ));
    }

    #[test]
    fn garbage_documents_are_errors() {
        assert!(matches!(parse_jwks(b"nope"), Err(JwksError::NotJson(_))));
        assert!(matches!(
            parse_jwks(br#"{"keys":{}}"#),
            Err(JwksError::NotJson(_))
        ));
        assert!(matches!(
            parse_jwks(br#"{"keys":[]}"#),
            Err(JwksError::NoUsableKeys(_))
        ));
        let big = vec![b' '; MAX_JWKS_BYTES + 1];
        assert!(matches!(parse_jwks(&big), Err(JwksError::TooLarge(_))));
    }
}

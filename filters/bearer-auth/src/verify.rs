//! Verifying one access token: size, shape, algorithm and key choice, then signature and claims.
//!
//! jwt-simple checks the signature and the registered claims. Everything it must not decide on
//! its own is done here first: the key is chosen by `kid` from *our* key set, `alg` must fit that
//! key, `none` and unconfigured HMAC are refused before any key is touched, and the clock (host
//! time) and skew are always passed in, so the library's 15-minute default tolerance never applies.

use std::collections::HashSet;
use std::fmt;

use jwt_simple::JWTError;
use jwt_simple::prelude::{
    Duration, ECDSAP256PublicKeyLike, ECDSAP384PublicKeyLike, EdDSAPublicKeyLike, HS256Key,
    HS384Key, HS512Key, JWTClaims, MACLike, RSAPublicKeyLike, UnixTimeStamp, VerificationOptions,
};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::b64::decode_url;
use crate::config::{ClaimHeader, HmacSecret};
use crate::jwks::{Key, KeySet, PublicKey};

/// Why a token was refused. Each maps to a fixed `error_description` (never the token itself)
/// and a metric label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    TooLarge,
    Malformed,
    MalformedHeader,
    AlgNone,
    HmacNotAccepted,
    UnsupportedAlg,
    UnsupportedCrit,
    WrongType,
    /// The token names a key id we do not have (maybe yet: the caller may refetch the JWKS).
    UnknownKid(String),
    /// No `kid`, and zero or several keys could verify it.
    NoKeyForToken,
    AlgKeyMismatch,
    BadSignature,
    MalformedClaims,
    Expired,
    NotYetValid,
    IssuedInFuture,
    NoExpiry,
    WrongIssuer,
    WrongAudience,
}

impl TokenError {
    /// The `error_description` sent to the client (RFC 6750 §3: human-readable, no secrets).
    pub fn description(&self) -> &'static str {
        match self {
            TokenError::TooLarge => "the access token is too large",
            TokenError::Malformed => "the access token is not a JWT in compact form",
            TokenError::MalformedHeader => "the access token header is malformed",
            TokenError::AlgNone => "unsigned tokens (alg none) are not accepted",
            TokenError::HmacNotAccepted => "HMAC-signed tokens are not accepted",
            TokenError::UnsupportedAlg => "the token's signature algorithm is not supported",
            TokenError::UnsupportedCrit => {
                "the token has critical header parameters we do not understand"
            }
            TokenError::WrongType => "the token is not an access token (typ)",
            TokenError::UnknownKid(_) => "the token was signed with an unknown key",
            TokenError::NoKeyForToken => "no key matches the token (kid missing)",
            TokenError::AlgKeyMismatch => "the token's algorithm does not match its key",
            TokenError::BadSignature => "the token signature is invalid",
            TokenError::MalformedClaims => "the token claims are malformed",
            TokenError::Expired => "the token has expired",
            TokenError::NotYetValid => "the token is not valid yet",
            TokenError::IssuedInFuture => "the token was issued in the future",
            TokenError::NoExpiry => "the token has no expiry (exp)",
            TokenError::WrongIssuer => "the token was issued by an untrusted issuer",
            TokenError::WrongAudience => "the token is not meant for this audience",
        }
    }

    /// Short label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            TokenError::TooLarge => "too_large",
            TokenError::Malformed | TokenError::MalformedHeader => "malformed",
            TokenError::AlgNone | TokenError::HmacNotAccepted | TokenError::UnsupportedAlg => {
                "bad_alg"
            }
            TokenError::UnsupportedCrit => "bad_crit",
            TokenError::WrongType => "wrong_typ",
            TokenError::UnknownKid(_) | TokenError::NoKeyForToken => "unknown_key",
            TokenError::AlgKeyMismatch => "bad_alg",
            TokenError::BadSignature => "bad_signature",
            TokenError::MalformedClaims => "malformed",
            TokenError::Expired => "expired",
            TokenError::NotYetValid | TokenError::IssuedInFuture => "not_yet_valid",
            TokenError::NoExpiry => "malformed",
            TokenError::WrongIssuer => "wrong_issuer",
            TokenError::WrongAudience => "wrong_audience",
        }
    }
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.description())
    }
}

/// Who a verified token speaks for: what the filter passes on to later filters and the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub subject: Option<String>,
    pub client_id: Option<String>,
    pub scopes: Vec<String>,
    /// `scopes` as one space-delimited value, as `x-auth-scope` carries it: joined once when the
    /// token is verified, not on every request that presents it again.
    pub scope: String,
    /// Configured claim-to-header mappings, already rendered (arrays joined with spaces).
    pub extra_headers: Vec<(String, String)>,
    /// `exp`, in seconds since the epoch: a cached identity is dropped at this time.
    pub expires_at: u64,
}

impl Identity {
    pub fn has_scopes(&self, required: &[String]) -> bool {
        required.iter().all(|r| self.scopes.iter().any(|s| s == r))
    }
}

/// What the verifier needs from the configuration.
pub struct Verifier {
    issuer: String,
    audiences: HashSet<String>,
    clock_skew_seconds: u64,
    required_typ: Option<String>,
    max_token_bytes: usize,
    hmac_secrets: Vec<HmacSecret>,
    claim_headers: Vec<ClaimHeader>,
}

const ASYMMETRIC_ALGS: &[&str] = &["EdDSA", "ES256", "ES384", "RS256", "RS384", "RS512"];
const HMAC_ALGS: &[&str] = &["HS256", "HS384", "HS512"];

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    crit: Option<Vec<String>>,
}

type Claims = JWTClaims<Map<String, Value>>;

impl Verifier {
    pub fn new(config: &crate::config::Config) -> Self {
        Self {
            issuer: config.issuer.clone(),
            audiences: config.audiences.clone(),
            clock_skew_seconds: config.clock_skew_seconds,
            required_typ: config.required_typ.clone(),
            max_token_bytes: config.max_token_bytes,
            hmac_secrets: config.hmac_secrets.clone(),
            claim_headers: config.claim_headers.clone(),
        }
    }

    pub fn max_token_bytes(&self) -> usize {
        self.max_token_bytes
    }

    /// Verifies `token` against `keys` at `now` (seconds since the epoch, from the host clock).
    pub fn verify(&self, token: &str, keys: &KeySet, now: u64) -> Result<Identity, TokenError> {
        // Size first: nothing of an oversized token is decoded.
        if token.len() > self.max_token_bytes {
            return Err(TokenError::TooLarge);
        }
        let header = parse_header(token)?;
        if header.crit.as_ref().is_some_and(|c| !c.is_empty()) {
            return Err(TokenError::UnsupportedCrit);
        }
        if header.alg.eq_ignore_ascii_case("none") {
            return Err(TokenError::AlgNone);
        }
        // The algorithm is judged before anything else in the header, so `none` and HMAC
        // confusion are always reported as what they are.
        let hmac_secret = if HMAC_ALGS.contains(&header.alg.as_str()) {
            let secret = self
                .hmac_secrets
                .iter()
                .find(|s| s.alg == header.alg && (s.kid.is_none() || s.kid == header.kid))
                .ok_or(TokenError::HmacNotAccepted)?;
            Some(secret)
        } else if ASYMMETRIC_ALGS.contains(&header.alg.as_str()) {
            None
        } else {
            return Err(TokenError::UnsupportedAlg);
        };
        if let Some(required) = &self.required_typ
            && !typ_matches(header.typ.as_deref(), required)
        {
            return Err(TokenError::WrongType);
        }
        let options = self.options(now);
        let claims = match hmac_secret {
            Some(secret) => verify_hmac(secret, token, options)?,
            None => {
                let key = choose_key(keys, header.kid.as_deref(), &header.alg)?;
                if !key.accepts(&header.alg) {
                    return Err(TokenError::AlgKeyMismatch);
                }
                verify_with_key(&key.key, &header.alg, token, options)?
            }
        };
        self.identity(claims)
    }

    fn options(&self, now: u64) -> VerificationOptions {
        VerificationOptions {
            allowed_issuers: Some(HashSet::from([self.issuer.clone()])),
            allowed_audiences: Some(self.audiences.clone()),
            // Always ours: jwt-simple's default tolerance is 15 minutes.
            time_tolerance: Some(Duration::from_secs(self.clock_skew_seconds)),
            artificial_time: Some(UnixTimeStamp::from_secs(now)),
            max_token_length: Some(self.max_token_bytes),
            accept_future: false,
            ..VerificationOptions::default()
        }
    }

    fn identity(&self, claims: Claims) -> Result<Identity, TokenError> {
        let expires_at = claims.expires_at.ok_or(TokenError::NoExpiry)?.as_secs();
        let custom = &claims.custom;
        let client_id = match custom.get("client_id") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(TokenError::MalformedClaims),
        };
        // RFC 9068 §2.2.3: `scope` is a space-separated string; some issuers send an array
        // (`scope` or `scp`), which we accept too.
        let scope_value = custom.get("scope").or_else(|| custom.get("scp"));
        let scopes: Vec<String> = match scope_value {
            None => Vec::new(),
            Some(Value::String(s)) => s
                .split(' ')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(String::from)
                        .ok_or(TokenError::MalformedClaims)
                })
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(TokenError::MalformedClaims),
        };
        let subject = claims.subject.clone();
        // These become header values: a control character would be refused by the host or,
        // worse, split a header. A well-behaved issuer never signs one.
        let all = subject.iter().chain(client_id.iter()).chain(scopes.iter());
        for value in all {
            if !is_header_safe(value) {
                return Err(TokenError::MalformedClaims);
            }
        }
        let mut extra_headers = Vec::new();
        for mapping in &self.claim_headers {
            let value = match mapping.claim.as_str() {
                "sub" => subject.clone().map(Value::String),
                "iss" => claims.issuer.clone().map(Value::String),
                "jti" => claims.jwt_id.clone().map(Value::String),
                "aud" => claims
                    .audiences
                    .clone()
                    .map(|a| Value::Array(a.into_set().into_iter().map(Value::String).collect())),
                other => custom.get(other).cloned(),
            };
            if let Some(rendered) = value.as_ref().and_then(render_claim)
                && is_header_safe(&rendered)
            {
                extra_headers.push((mapping.header.clone(), rendered));
            }
        }
        Ok(Identity {
            subject,
            client_id,
            scope: scopes.join(" "),
            scopes,
            extra_headers,
            expires_at,
        })
    }
}

fn parse_header(token: &str) -> Result<Header, TokenError> {
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let bytes = decode_url(header).ok_or(TokenError::MalformedHeader)?;
    serde_json::from_slice(&bytes).map_err(|_| TokenError::MalformedHeader)
}

/// RFC 9068 §4: `at+jwt`, compared case-insensitively, with or without `application/`.
fn typ_matches(typ: Option<&str>, required: &str) -> bool {
    let strip = |s: &str| {
        let lower = s.to_ascii_lowercase();
        lower
            .strip_prefix("application/")
            .map(String::from)
            .unwrap_or(lower)
    };
    typ.is_some_and(|t| strip(t) == strip(required))
}

fn choose_key<'a>(
    keys: &'a KeySet,
    kid: Option<&str>,
    alg: &'a str,
) -> Result<&'a Key, TokenError> {
    match kid {
        Some(kid) => keys
            .by_kid(kid)
            .ok_or_else(|| TokenError::UnknownKid(kid.to_string())),
        None => {
            let mut candidates = keys.accepting(alg);
            match (candidates.next(), candidates.next()) {
                (Some(only), None) => Ok(only),
                _ => Err(TokenError::NoKeyForToken),
            }
        }
    }
}

fn verify_with_key(
    key: &PublicKey,
    alg: &str,
    token: &str,
    options: VerificationOptions,
) -> Result<Claims, TokenError> {
    let opts = Some(options);
    let result = match (key, alg) {
        (PublicKey::Ed25519(k), "EdDSA") => k.verify_token(token, opts),
        (PublicKey::Es256(k), "ES256") => k.verify_token(token, opts),
        (PublicKey::Es384(k), "ES384") => k.verify_token(token, opts),
        (PublicKey::Rsa(k), "RS256") => k.rs256.verify_token(token, opts),
        (PublicKey::Rsa(k), "RS384") => k.rs384.verify_token(token, opts),
        (PublicKey::Rsa(k), "RS512") => k.rs512.verify_token(token, opts),
        _ => return Err(TokenError::AlgKeyMismatch),
    };
    result.map_err(map_error)
}

fn verify_hmac(
    secret: &HmacSecret,
    token: &str,
    options: VerificationOptions,
) -> Result<Claims, TokenError> {
    let opts = Some(options);
    let result = match secret.alg.as_str() {
        "HS256" => HS256Key::from_bytes(&secret.secret).verify_token(token, opts),
        "HS384" => HS384Key::from_bytes(&secret.secret).verify_token(token, opts),
        "HS512" => HS512Key::from_bytes(&secret.secret).verify_token(token, opts),
        _ => return Err(TokenError::HmacNotAccepted),
    };
    result.map_err(map_error)
}

/// jwt-simple's error → our reason. Anything not recognised is a malformed token: the safe
/// answer is a refusal with a generic description.
fn map_error(err: jwt_simple::Error) -> TokenError {
    if let Some(e) = err.downcast_ref::<JWTError>() {
        return match e {
            JWTError::InvalidSignature | JWTError::InvalidAuthenticationTag => {
                TokenError::BadSignature
            }
            JWTError::TokenHasExpired => TokenError::Expired,
            JWTError::TokenNotValidYet => TokenError::NotYetValid,
            JWTError::ClockDrift => TokenError::IssuedInFuture,
            JWTError::RequiredIssuerMismatch | JWTError::RequiredIssuerMissing => {
                TokenError::WrongIssuer
            }
            JWTError::RequiredAudienceMismatch | JWTError::RequiredAudienceMissing => {
                TokenError::WrongAudience
            }
            JWTError::TokenTooLong => TokenError::TooLarge,
            JWTError::AlgorithmMismatch => TokenError::AlgKeyMismatch,
            JWTError::UnknownCriticalExtension => TokenError::UnsupportedCrit,
            JWTError::NotJWT | JWTError::RequiredSignatureTypeMismatch => TokenError::WrongType,
            JWTError::HeaderTooLarge => TokenError::TooLarge,
            JWTError::CompactEncodingError => TokenError::Malformed,
            _ => TokenError::MalformedClaims,
        };
    }
    if err.downcast_ref::<serde_json::Error>().is_some() {
        return TokenError::MalformedClaims;
    }
    // base64 errors in the signature or claims part.
    TokenError::Malformed
}

fn render_claim(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Array(items) => {
            let parts: Option<Vec<String>> = items
                .iter()
                .map(|v| match v {
                    Value::Array(_) | Value::Object(_) | Value::Null => None,
                    scalar => render_claim(scalar),
                })
                .collect();
            parts.map(|p| p.join(" "))
        }
        Value::Object(_) | Value::Null => None,
    }
}

fn is_header_safe(value: &str) -> bool {
    !value.chars().any(|c| c.is_control())
}

#[cfg(test)]
#[cfg(not(target_arch = "wasm32"))]
mod tests;

//! JWT assertions (RFC 7523 §3), for both uses: client authentication (`private_key_jwt`,
//! §2.2) and the JWT bearer grant (§2.1). The caller says which client's keys must have signed
//! it; this module checks the signature and the claims, and spends the `jti` so it can't be
//! replayed.

use std::collections::HashSet;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jwt_simple::prelude::*;

use crate::service::Authz;
use crate::storage::Client;

/// Longest assertion we look at (a 4096-bit RSA signature fits easily).
const MAX_ASSERTION_LEN: usize = 16 * 1024;

/// The checked claims of an assertion.
#[derive(Debug, Clone)]
pub struct Assertion {
    pub issuer: String,
    pub subject: String,
    pub jti: String,
    pub expires_at: i64,
}

/// The `iss` claim, read without checking anything: only to find whose keys to check with.
pub fn unverified_issuer(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    v.get("iss")?.as_str().map(str::to_string)
}

/// Verify `token` as an assertion issued by `client`. `required_subject` is set for client
/// authentication (`sub` must be the client id). Returns a reason on failure, for the log and
/// the error description.
pub fn verify(
    authz: &Authz,
    token: &str,
    client: &Client,
    required_subject: Option<&str>,
) -> Result<Assertion, String> {
    if token.len() > MAX_ASSERTION_LEN {
        return Err("the assertion is too long".into());
    }
    let meta = Token::decode_metadata(token).map_err(|_| "the assertion is not a JWT")?;
    let jwks = client
        .jwks
        .as_ref()
        .ok_or_else(|| format!("client `{}` has no registered keys", client.id))?;
    let keys = crate::jwk::candidate_keys(jwks, meta.key_id(), meta.algorithm());
    if keys.is_empty() {
        return Err(format!(
            "no key registered for client `{}` matches the assertion's alg `{}`{}",
            client.id,
            meta.algorithm(),
            meta.key_id()
                .map(|k| format!(" and kid `{k}`"))
                .unwrap_or_default()
        ));
    }
    let now = authz.clock.now();
    let skew = authz.config.security.clock_skew_secs;
    let audiences: HashSet<String> = [
        authz.config.token_endpoint(),
        authz.config.issuer.clone(),
        authz.config.base_url().to_string(),
    ]
    .into_iter()
    .collect();
    let opts = || VerificationOptions {
        allowed_issuers: Some(HashSet::from([client.id.clone()])),
        allowed_audiences: Some(audiences.clone()),
        required_subject: required_subject.map(str::to_string),
        time_tolerance: Some(Duration::from_secs(u64::try_from(skew).unwrap_or(0))),
        artificial_time: Some(UnixTimeStamp::from_secs(u64::try_from(now).unwrap_or(0))),
        max_token_length: Some(MAX_ASSERTION_LEN),
        ..Default::default()
    };
    let mut last_err = String::new();
    let mut claims = None;
    for key in &keys {
        match key.verify(token, opts()) {
            Ok(c) => {
                claims = Some(c);
                break;
            }
            Err(e) => last_err = e,
        }
    }
    let claims = claims.ok_or_else(|| format!("the assertion was rejected: {last_err}"))?;

    // Claims jwt-simple treats as optional but RFC 7523 §3 requires.
    let expires_at = claims
        .expires_at
        .map(|t| i64::try_from(t.as_secs()).unwrap_or(i64::MAX))
        .ok_or("the assertion has no `exp`")?;
    if expires_at - now > authz.config.security.assertion_max_lifetime_secs + skew {
        return Err(format!(
            "the assertion's `exp` is more than {} s away",
            authz.config.security.assertion_max_lifetime_secs
        ));
    }
    let subject = claims.subject.ok_or("the assertion has no `sub`")?;
    let jti = claims.jwt_id.ok_or("the assertion has no `jti`")?;
    let issuer = client.id.clone();
    // Kept until it could no longer be accepted anyway (exp + skew): a bounded replay store.
    let fresh = authz
        .storage
        .consume_jti(&issuer, &jti, expires_at.saturating_add(skew))
        .map_err(|e| {
            tracing::error!("storage error: {e}");
            "the authorization server could not record the assertion".to_string()
        })?;
    if !fresh {
        return Err("the assertion's `jti` was already used".into());
    }
    Ok(Assertion {
        issuer,
        subject,
        jti,
        expires_at,
    })
}

//! Checks an access token we issued: our signature (with a key we still publish), our issuer,
//! not expired, recorded at issuance. Revocation is checked by the callers.

use jwt_simple::prelude::*;

use crate::service::Authz;
use crate::storage::IssuedToken;

/// Longest token looked at.
const MAX_TOKEN_LEN: usize = 8 * 1024;

/// The issuance record of a valid access token, or `None` (never an error: to introspection
/// and revocation an unverifiable token is simply not one of ours).
pub fn access_token(authz: &Authz, token: &str) -> Option<IssuedToken> {
    if token.len() > MAX_TOKEN_LEN {
        return None;
    }
    let meta = Token::decode_metadata(token).ok()?;
    if meta.signature_type() != Some("at+jwt") {
        return None;
    }
    let now = authz.clock.now();
    let jwks = authz.jwks().ok()?;
    let keys = crate::jwk::candidate_keys(&jwks, meta.key_id(), meta.algorithm());
    let at = UnixTimeStamp::from_secs(u64::try_from(now).ok()?);
    let opts = || VerificationOptions {
        allowed_issuers: Some(std::collections::HashSet::from([authz
            .config
            .issuer
            .clone()])),
        time_tolerance: Some(Duration::from_secs(0)),
        artificial_time: Some(at),
        max_token_length: Some(MAX_TOKEN_LEN),
        ..Default::default()
    };
    let claims = keys.iter().find_map(|k| k.verify(token, opts()).ok())?;
    let jti = claims.jwt_id?;
    let record = authz.storage.issued_token(&jti).ok()??;
    (record.expires_at > now).then_some(record)
}

//! PKCE (RFC 7636) with S256 only: `plain` would hand the verifier to anyone who sees the
//! authorization request (RFC 9700 §2.1.1).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// RFC 7636 §4.1: 43 to 128 characters of `[A-Z] / [a-z] / [0-9] / "-" / "." / "_" / "~"`.
fn well_formed(s: &str) -> bool {
    (43..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// Check a `code_challenge` and its method at the authorization endpoint.
pub fn check_challenge(challenge: &str, method: Option<&str>) -> Result<(), String> {
    match method {
        Some("S256") => {}
        None | Some("plain") => {
            return Err("code_challenge_method must be S256 (plain is not accepted)".into());
        }
        Some(other) => {
            return Err(format!("code_challenge_method `{other}` is not supported"));
        }
    }
    // An S256 challenge is base64url of 32 bytes: exactly 43 characters.
    if challenge.len() != 43 || !well_formed(challenge) {
        return Err("code_challenge is not a base64url-encoded SHA-256 hash".into());
    }
    Ok(())
}

/// The S256 challenge of a verifier.
pub fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Whether `verifier` answers `challenge`.
pub fn verify(verifier: &str, challenge: &str) -> Result<(), String> {
    if !well_formed(verifier) {
        return Err("code_verifier must be 43 to 128 unreserved characters".into());
    }
    if bool::from(s256(verifier).as_bytes().ct_eq(challenge.as_bytes())) {
        Ok(())
    } else {
        Err("code_verifier does not match the code_challenge".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc7636_appendix_b_example() {
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert_eq!(s256(verifier), challenge);
        assert!(verify(verifier, challenge).is_ok());
        assert!(check_challenge(challenge, Some("S256")).is_ok());
    }

    #[test]
    fn plain_missing_method_and_bad_values_are_refused() {
        let c = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert!(check_challenge(c, Some("plain")).is_err());
        assert!(check_challenge(c, None).is_err());
        assert!(check_challenge(c, Some("S512")).is_err());
        assert!(check_challenge("short", Some("S256")).is_err());
        assert!(check_challenge(&format!("{}=", &c[..42]), Some("S256")).is_err());
        assert!(verify("too-short", c).is_err());
        let other = "x".repeat(43);
        assert!(verify(&other, c).unwrap_err().contains("does not match"));
    }
}

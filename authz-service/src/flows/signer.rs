//! HMAC-signed values for the browser: session cookies, CSRF tokens and the pending
//! authorization request carried through the login and consent forms. Signing (rather than
//! storing) keeps the pages stateless; a `purpose` label keeps one kind of value from being
//! accepted as another.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

pub struct Signer {
    key: Vec<u8>,
}

impl Signer {
    pub fn new(key: Vec<u8>) -> Self {
        Signer { key }
    }

    fn mac(&self, purpose: &str, data: &[u8]) -> Vec<u8> {
        match Hmac::<Sha256>::new_from_slice(&self.key) {
            Ok(mut m) => {
                m.update(purpose.as_bytes());
                m.update(&[0]);
                m.update(data);
                m.finalize().into_bytes().to_vec()
            }
            // HMAC takes keys of any length; an empty tag never verifies (see `verify`).
            Err(_) => Vec::new(),
        }
    }

    /// A tag over `data` (e.g. a CSRF token derived from the CSRF cookie).
    pub fn tag(&self, purpose: &str, data: &str) -> String {
        URL_SAFE_NO_PAD.encode(self.mac(purpose, data.as_bytes()))
    }

    /// Constant-time check of a tag made by `tag`.
    pub fn check_tag(&self, purpose: &str, data: &str, tag: &str) -> bool {
        let expected = self.mac(purpose, data.as_bytes());
        match URL_SAFE_NO_PAD.decode(tag) {
            Ok(given) => !expected.is_empty() && bool::from(expected.ct_eq(&given)),
            Err(_) => false,
        }
    }

    /// `base64url(json).base64url(mac)`.
    pub fn seal<T: serde::Serialize>(&self, purpose: &str, value: &T) -> Option<String> {
        let json = serde_json::to_vec(value).ok()?;
        let mac = self.mac(purpose, &json);
        Some(format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&json),
            URL_SAFE_NO_PAD.encode(mac)
        ))
    }

    /// The value sealed by `seal` for the same purpose, if the signature holds.
    pub fn open<T: serde::de::DeserializeOwned>(&self, purpose: &str, sealed: &str) -> Option<T> {
        // Bounds the work an attacker can make us do with a huge cookie or field.
        if sealed.len() > 8 * 1024 {
            return None;
        }
        let (data, mac) = sealed.split_once('.')?;
        let json = URL_SAFE_NO_PAD.decode(data).ok()?;
        let given = URL_SAFE_NO_PAD.decode(mac).ok()?;
        let expected = self.mac(purpose, &json);
        if expected.is_empty() || !bool::from(expected.ct_eq(&given)) {
            return None;
        }
        serde_json::from_slice(&json).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_unchanged_and_for_their_purpose() {
        let s = Signer::new(vec![1; 32]);
        let sealed = s.seal("session", &("bob", 5)).unwrap();
        assert_eq!(
            s.open::<(String, i64)>("session", &sealed).unwrap().0,
            "bob"
        );
        assert!(s.open::<(String, i64)>("request", &sealed).is_none());
        let (data, mac) = sealed.split_once('.').unwrap();
        let forged = format!(
            "{}.{mac}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&("alice", 5)).unwrap())
        );
        assert!(s.open::<(String, i64)>("session", &forged).is_none());
        assert!(s.open::<(String, i64)>("session", data).is_none());
        assert!(
            Signer::new(vec![2; 32])
                .open::<(String, i64)>("session", &sealed)
                .is_none()
        );
    }

    #[test]
    fn tags_check_in_constant_time_and_by_purpose() {
        let s = Signer::new(vec![1; 32]);
        let t = s.tag("csrf", "cookie");
        assert!(s.check_tag("csrf", "cookie", &t));
        assert!(!s.check_tag("csrf", "other", &t));
        assert!(!s.check_tag("x", "cookie", &t));
        assert!(!s.check_tag("csrf", "cookie", "!!"));
    }
}

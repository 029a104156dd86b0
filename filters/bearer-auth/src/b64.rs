//! base64 decoding for JWT parts and JWK members.

use ct_codecs::{Base64, Base64NoPadding, Base64UrlSafe, Base64UrlSafeNoPadding, Decoder};

/// Strict base64url without padding, as RFC 7515 requires for every JWS part and JWK member.
pub fn decode_url(s: &str) -> Option<Vec<u8>> {
    Base64UrlSafeNoPadding::decode_to_vec(s, None).ok()
}

/// For secrets an operator pastes into the config: base64url or standard base64, padded or not.
pub fn decode_lenient(s: &str) -> Option<Vec<u8>> {
    decode_url(s)
        .or_else(|| Base64UrlSafe::decode_to_vec(s, None).ok())
        .or_else(|| Base64::decode_to_vec(s, None).ok())
        .or_else(|| Base64NoPadding::decode_to_vec(s, None).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_alphabet_without_padding_only() {
        assert_eq!(decode_url("_-8").as_deref(), Some(&[0xff, 0xef][..]));
        assert_eq!(decode_url("aGk"), Some(b"hi".to_vec()));
        assert_eq!(decode_url("aGk="), None);
        assert_eq!(decode_url("a+/b"), None);
    }

    #[test]
    fn lenient_accepts_standard_base64() {
        assert_eq!(decode_lenient("aGk="), Some(b"hi".to_vec()));
        assert_eq!(decode_lenient("+/8"), Some(vec![0xfb, 0xff]));
        assert_eq!(decode_lenient("!!"), None);
    }
}

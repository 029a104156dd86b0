//! Strict parsing of `application/x-www-form-urlencoded` request bodies (RFC 6749 §3.2,
//! appendix B): a repeated parameter is an error rather than "last one wins", because two
//! values for e.g. `scope` or `client_id` mean the request is ambiguous or forged.

use std::collections::HashMap;

use crate::error::OAuthError;

/// The parameters of one request, each present at most once. Parameters sent without a value
/// are treated as omitted (RFC 6749 §3.1).
#[derive(Debug, Default, Clone)]
pub struct Form {
    params: HashMap<String, String>,
}

impl Form {
    /// Parse a request body. Fails with `invalid_request` on non-UTF-8 text, a malformed
    /// percent-escape or a repeated parameter.
    pub fn parse(body: &[u8]) -> Result<Form, OAuthError> {
        let text = std::str::from_utf8(body)
            .map_err(|_| OAuthError::invalid_request("the request body is not valid UTF-8"))?;
        check_percent_escapes(text)?;
        let mut params = HashMap::new();
        for (name, value) in form_urlencoded::parse(text.as_bytes()) {
            if name.is_empty() {
                continue;
            }
            if params.contains_key(name.as_ref()) {
                return Err(OAuthError::invalid_request(format!(
                    "parameter `{name}` is repeated"
                )));
            }
            params.insert(name.into_owned(), value.into_owned());
        }
        // A parameter that only appeared empty is "omitted"; a repeat of it was still caught above.
        params.retain(|_, v| !v.is_empty());
        Ok(Form { params })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.params.get(name).map(String::as_str)
    }

    /// A parameter that must be present.
    pub fn require(&self, name: &str) -> Result<&str, OAuthError> {
        self.get(name)
            .ok_or_else(|| OAuthError::invalid_request(format!("missing parameter `{name}`")))
    }
}

/// `form_urlencoded` silently keeps a bad escape such as `%zz` as text; a strict server says no.
fn check_percent_escapes(text: &str) -> Result<(), OAuthError> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let ok = matches!(
                (bytes.get(i + 1), bytes.get(i + 2)),
                (Some(h), Some(l)) if h.is_ascii_hexdigit() && l.is_ascii_hexdigit()
            );
            if !ok {
                return Err(OAuthError::invalid_request(
                    "the request body has a malformed percent-escape",
                ));
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    #[test]
    fn decodes_plus_and_escapes() {
        let f = Form::parse(b"grant_type=client_credentials&scope=a+b%20c").unwrap();
        assert_eq!(f.get("grant_type"), Some("client_credentials"));
        assert_eq!(f.get("scope"), Some("a b c"));
    }

    #[test]
    fn repeated_parameter_is_invalid_request() {
        let e = Form::parse(b"scope=a&scope=b").unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidRequest);
        assert!(e.description.contains("scope"));
        // Even when one of the two is empty.
        assert!(Form::parse(b"scope=&scope=b").is_err());
    }

    #[test]
    fn empty_value_is_omitted() {
        let f = Form::parse(b"scope=&grant_type=x").unwrap();
        assert_eq!(f.get("scope"), None);
        assert!(f.require("scope").is_err());
    }

    #[test]
    fn malformed_escape_and_bad_utf8_are_rejected() {
        assert!(Form::parse(b"a=%zz").is_err());
        assert!(Form::parse(b"a=%4").is_err());
        assert!(Form::parse(b"a=\xff").is_err());
    }
}

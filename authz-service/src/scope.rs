//! Scope strings (RFC 6749 §3.3): parsing, syntax check, and the "requested ⊆ allowed" rule.

use crate::error::OAuthError;

/// Split a space-delimited scope string, checking each token's characters
/// (`%x21 / %x23-5B / %x5D-7E`) and dropping duplicates while keeping order.
pub fn parse(scope: &str) -> Result<Vec<String>, OAuthError> {
    let mut out: Vec<String> = Vec::new();
    for token in scope.split(' ').filter(|t| !t.is_empty()) {
        let valid = token
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b));
        if !valid {
            return Err(OAuthError::invalid_scope(format!(
                "scope token `{}` has characters RFC 6749 §3.3 does not allow",
                token.escape_default()
            )));
        }
        if !out.iter().any(|s| s == token) {
            out.push(token.to_string());
        }
    }
    Ok(out)
}

/// The scopes to grant: the requested ones if the client may have all of them, the client's
/// default scopes when nothing was asked.
pub fn resolve(
    requested: Option<&str>,
    allowed: &[String],
    default: &[String],
) -> Result<Vec<String>, OAuthError> {
    let Some(requested) = requested else {
        return Ok(default.to_vec());
    };
    let wanted = parse(requested)?;
    if let Some(extra) = wanted.iter().find(|s| !allowed.contains(s)) {
        return Err(OAuthError::invalid_scope(format!(
            "scope `{extra}` is not allowed for this client"
        )));
    }
    Ok(wanted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn subset_is_granted_and_default_used_when_absent() {
        let allowed = v(&["demo", "notes:read"]);
        assert_eq!(
            resolve(Some("notes:read"), &allowed, &v(&["demo"])).unwrap(),
            v(&["notes:read"])
        );
        assert_eq!(
            resolve(None, &allowed, &v(&["demo"])).unwrap(),
            v(&["demo"])
        );
        assert_eq!(
            resolve(Some("demo  demo"), &allowed, &[]).unwrap(),
            v(&["demo"])
        );
    }

    #[test]
    fn outside_scope_and_bad_characters_are_invalid_scope() {
        let allowed = v(&["demo"]);
        let e = resolve(Some("demo admin"), &allowed, &[]).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidScope);
        assert!(e.description.contains("admin"));
        assert_eq!(
            resolve(Some("de\"mo"), &allowed, &[]).unwrap_err().code,
            ErrorCode::InvalidScope
        );
    }
}

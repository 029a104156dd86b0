//! Finding the access token in a request (RFC 6750 §2): the `Authorization: Bearer` header and,
//! only when the config enables it, the `access_token` query parameter.

/// Why the request itself is malformed (answered with 400 `invalid_request`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestError {
    NotText,
    EmptyBearer,
    BadTokenSyntax,
    MultipleTokens,
}

impl RequestError {
    pub fn description(&self) -> &'static str {
        match self {
            RequestError::NotText => "the Authorization header is not valid text",
            RequestError::EmptyBearer => "the Bearer credentials are empty",
            RequestError::BadTokenSyntax => "the Bearer credentials are malformed",
            RequestError::MultipleTokens => "the request carries more than one access token",
        }
    }
}

/// Where the token was found: the adapter strips it from there when the config says so. A header
/// token is borrowed from the header: it is read on every request, and a copy would buy nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found<'a> {
    Header(&'a str),
    /// Percent-decoded, so owned.
    Query(String),
}

impl Found<'_> {
    pub fn token(&self) -> &str {
        match self {
            Found::Header(t) => t,
            Found::Query(t) => t,
        }
    }
}

/// `authorization`: the raw header value, if any. `path`: `:path` with its query.
/// Another scheme (e.g. `Basic`) is not a bearer token: the caller treats it as no token, which
/// RFC 6750 §3.1 answers without an error code.
pub fn extract<'a>(
    authorization: Option<&'a [u8]>,
    path: &str,
    allow_query: bool,
) -> Result<Option<Found<'a>>, RequestError> {
    let from_header = match authorization {
        None => None,
        Some(raw) => bearer_from_header(raw)?,
    };
    let from_query = if allow_query {
        token_from_query(path)?
    } else {
        None
    };
    match (from_header, from_query) {
        (Some(_), Some(_)) => Err(RequestError::MultipleTokens),
        (Some(t), None) => Ok(Some(Found::Header(t))),
        (None, Some(t)) => Ok(Some(Found::Query(t))),
        (None, None) => Ok(None),
    }
}

/// The bytes after `Bearer ` (one space, the scheme in any case), unchecked: what a token in the
/// shape nearly every client sends would be. Only for looking a token up among those verified
/// before; everything else goes through `extract`.
pub fn bearer_candidate(raw: &[u8]) -> Option<&[u8]> {
    let (scheme, token) = raw.split_at_checked(BEARER_PREFIX.len())?;
    scheme.eq_ignore_ascii_case(BEARER_PREFIX).then_some(token)
}

const BEARER_PREFIX: &[u8] = b"bearer ";

/// The token in an `Authorization` value. The shape nearly every client sends, `Bearer <token>`
/// with one space, is taken in one pass over the token; anything else goes the general way, which
/// gives the same answer for that shape (a property test holds them to it).
fn bearer_from_header(raw: &[u8]) -> Result<Option<&str>, RequestError> {
    if let Some(token) = bearer_candidate(raw)
        && is_b64token_bytes(token)
        && let Ok(token) = std::str::from_utf8(token)
    {
        return Ok(Some(token));
    }
    bearer_from_header_in_general(raw)
}

fn bearer_from_header_in_general(raw: &[u8]) -> Result<Option<&str>, RequestError> {
    let text = std::str::from_utf8(raw).map_err(|_| RequestError::NotText)?;
    let text = text.trim_matches([' ', '\t']);
    let (scheme, rest) = match text.split_once([' ', '\t']) {
        Some((s, r)) => (s, r.trim_start_matches([' ', '\t'])),
        None => (text, ""),
    };
    // Envoy joins repeated Authorization headers with a comma: "Bearer a,Bearer b".
    if !scheme.eq_ignore_ascii_case("bearer") {
        if scheme.len() > 6
            && scheme
                .get(..6)
                .is_some_and(|s| s.eq_ignore_ascii_case("bearer"))
        {
            // "Bearer,..." or "Bearerxyz": a bearer attempt, badly written.
            return Err(RequestError::BadTokenSyntax);
        }
        return Ok(None);
    }
    if rest.is_empty() {
        return Err(RequestError::EmptyBearer);
    }
    if rest.contains(',') {
        return Err(RequestError::MultipleTokens);
    }
    if !is_b64token(rest) {
        return Err(RequestError::BadTokenSyntax);
    }
    Ok(Some(rest))
}

/// RFC 6750 §2.1: `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`
pub fn is_b64token(s: &str) -> bool {
    is_b64token_bytes(s.as_bytes())
}

fn is_b64token_bytes(bytes: &[u8]) -> bool {
    let padding = bytes.iter().rev().take_while(|&&b| b == b'=').count();
    let body = bytes.get(..bytes.len() - padding).unwrap_or_default();
    // Without an early exit the loop has no branch per byte, and the compiler unrolls it: this
    // runs over every token on every request, and nearly every token passes.
    !body.is_empty()
        && body
            .iter()
            .fold(true, |ok, &b| ok & B64TOKEN_CHAR[usize::from(b)])
}

/// Which bytes a b64token may hold: one table load per byte of every token on every request,
/// instead of a chain of comparisons.
static B64TOKEN_CHAR: [bool; 256] = {
    let mut table = [false; 256];
    let mut b: u8 = 0;
    loop {
        table[b as usize] =
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/');
        if b == u8::MAX {
            break table;
        }
        b += 1;
    }
};

fn token_from_query(path: &str) -> Result<Option<String>, RequestError> {
    let Some((_, query)) = path.split_once('?') else {
        return Ok(None);
    };
    let query = query.split_once('#').map_or(query, |(q, _)| q);
    let mut found = None;
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        if name != "access_token" {
            continue;
        }
        if found.is_some() {
            return Err(RequestError::MultipleTokens);
        }
        let decoded = percent_decode(value).ok_or(RequestError::BadTokenSyntax)?;
        if decoded.is_empty() {
            return Err(RequestError::EmptyBearer);
        }
        if !is_b64token(&decoded) {
            return Err(RequestError::BadTokenSyntax);
        }
        found = Some(decoded);
    }
    Ok(found)
}

/// `:path` without the `access_token` parameter, for when the token must not go upstream.
pub fn strip_query_token(path: &str) -> String {
    let Some((base, query)) = path.split_once('?') else {
        return path.to_string();
    };
    let kept: Vec<&str> = query
        .split('&')
        .filter(|p| p.split_once('=').map_or(*p, |(n, _)| n) != "access_token")
        .collect();
    if kept.is_empty() || kept.iter().all(|p| p.is_empty()) {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    }
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let text = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(text, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(v: &[u8]) -> Result<Option<Found<'_>>, RequestError> {
        extract(Some(v), "/api/notes", false)
    }

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        for v in [
            "Bearer abc.def.ghi",
            "bearer abc.def.ghi",
            "BEARER  abc.def.ghi ",
            "\tBearer\tabc.def.ghi",
        ] {
            assert_eq!(
                header(v.as_bytes()),
                Ok(Some(Found::Header("abc.def.ghi"))),
                "{v:?}"
            );
        }
    }

    #[test]
    fn b64token_is_exactly_the_rfc_6750_alphabet() {
        assert!(is_b64token("azAZ09-._~+/"));
        assert!(is_b64token("abc=="));
        for bad in [
            "", "==", "a=b", "a b", "a,b", "a;b", "a\"b", "a\\b", "a%b", "é", "a\tb",
        ] {
            assert!(!is_b64token(bad), "{bad:?}");
        }
        let allowed = (0..=u8::MAX)
            .filter(|&b| B64TOKEN_CHAR[usize::from(b)])
            .count();
        assert_eq!(allowed, 26 + 26 + 10 + 6);
    }

    #[test]
    fn other_schemes_are_no_token() {
        assert_eq!(header(b"Basic MTIzOnNlY3JldA=="), Ok(None));
        assert_eq!(extract(None, "/x", false), Ok(None));
    }

    #[test]
    fn malformed_headers_are_invalid_requests() {
        assert_eq!(header(b"Bearer"), Err(RequestError::EmptyBearer));
        assert_eq!(header(b"Bearer   "), Err(RequestError::EmptyBearer));
        assert_eq!(header(b"Bearer a b"), Err(RequestError::BadTokenSyntax));
        assert_eq!(header(b"Bearer a\"b"), Err(RequestError::BadTokenSyntax));
        assert_eq!(
            header(b"Bearer a,Bearer b"),
            Err(RequestError::MultipleTokens)
        );
        assert_eq!(header(b"Bearer,x"), Err(RequestError::BadTokenSyntax));
        assert_eq!(header(b"Bearer ==="), Err(RequestError::BadTokenSyntax));
        assert_eq!(header(b"Bearer \xff\xfe"), Err(RequestError::NotText));
    }

    #[test]
    fn query_token_only_when_enabled() {
        assert_eq!(extract(None, "/x?access_token=abc", false), Ok(None));
        assert_eq!(
            extract(None, "/x?a=1&access_token=a%2Eb", true),
            Ok(Some(Found::Query("a.b".into())))
        );
        assert_eq!(
            extract(None, "/x?access_token=a&access_token=b", true),
            Err(RequestError::MultipleTokens)
        );
        assert_eq!(
            extract(Some(b"Bearer x"), "/x?access_token=a", true),
            Err(RequestError::MultipleTokens)
        );
        assert_eq!(
            extract(None, "/x?access_token=%zz", true),
            Err(RequestError::BadTokenSyntax)
        );
        assert_eq!(
            extract(None, "/x?access_token=", true),
            Err(RequestError::EmptyBearer)
        );
    }

    #[test]
    fn query_token_can_be_stripped() {
        assert_eq!(strip_query_token("/x?a=1&access_token=t&b=2"), "/x?a=1&b=2");
        assert_eq!(strip_query_token("/x?access_token=t"), "/x");
        assert_eq!(strip_query_token("/x"), "/x");
    }

    /// Generated header values and paths (proptest): whatever a client sends, the answer is a
    /// refusal or a well-formed token, and every well-formed bearer token is found.
    #[cfg(not(target_arch = "wasm32"))]
    mod properties {
        use super::*;
        use proptest::collection::vec;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn any_request_gives_a_refusal_or_a_b64token(
                authorization in proptest::option::of(vec(any::<u8>(), 0..48)),
                path in "(?s).{0,24}",
                allow_query in any::<bool>(),
            ) {
                if let Ok(Some(found)) = extract(authorization.as_deref(), &path, allow_query) {
                    prop_assert!(is_b64token(found.token()), "{:?}", found);
                }
            }

            #[test]
            fn a_bearer_b64token_is_found_as_sent(
                scheme in "[bB][eE][aA][rR][eE][rR]",
                before in "[ \t]{0,2}",
                between in "[ \t]{1,3}",
                after in "[ \t]{0,2}",
                token in "[A-Za-z0-9._~+/-]{1,40}={0,2}",
            ) {
                let raw = format!("{before}{scheme}{between}{token}{after}");
                prop_assert_eq!(
                    extract(Some(raw.as_bytes()), "/api/notes", false),
                    Ok(Some(Found::Header(&token)))
                );
            }

            /// The one-pass shortcut answers exactly as the general way would, for any value:
            /// near misses of its shape included.
            #[test]
            fn the_shortcut_agrees_with_the_general_way(
                raw in prop_oneof![
                    vec(any::<u8>(), 0..48),
                    "(?i)bearer[ \t,]{0,2}[A-Za-z0-9._~+/=, \t\"-]{0,24}"
                        .prop_map(String::into_bytes),
                ],
            ) {
                prop_assert_eq!(bearer_from_header(&raw), bearer_from_header_in_general(&raw));
            }
        }
    }
}

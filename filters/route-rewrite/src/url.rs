//! Turning an expanded substitution into a path, a query and a Location: query merging as the
//! flags say, and escaping of what may not appear in a request target or a header.

use wasmgate_filter_common::text::split_once_ascii;

/// Splits `path?query` at the first `?`.
pub fn split_query(target: &str) -> (&str, Option<&str>) {
    match split_once_ascii(target, b'?') {
        Some((path, query)) => (path, Some(query)),
        None => (target, None),
    }
}

/// `path` plus `?query` when there is a query.
pub fn join(path: &str, query: Option<&str>) -> String {
    match query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    }
}

/// The query after a rule applied, following mod_rewrite: a substitution without `?` keeps the
/// current query; one with `?` replaces it (an empty one drops it) unless `QSA` appends the
/// current query to it; `QSD` drops the current query in every case.
pub fn merge_query(
    substituted: Option<&str>,
    current: Option<&str>,
    qsappend: bool,
    qsdiscard: bool,
) -> Option<String> {
    let current = if qsdiscard {
        None
    } else {
        current.filter(|q| !q.is_empty())
    };
    match (substituted, current) {
        (None, current) => current.map(str::to_string),
        (Some(new), Some(old)) if qsappend => Some(if new.is_empty() {
            old.to_string()
        } else {
            format!("{new}&{old}")
        }),
        (Some(""), _) => None,
        (Some(new), _) => Some(new.to_string()),
    }
}

/// Percent-encodes the bytes that may not appear in a request target or a header value
/// (controls, space, non-ASCII, `"<>\^`{|}`), so that a value copied from a header or a group
/// can never break the request. `%` is left alone: the text is already percent-encoded.
/// `#` is encoded too unless `keep_fragment` (a redirect's Location may carry a fragment).
pub fn escape(text: &str, keep_fragment: bool) -> String {
    let needs_escape = |byte: u8| !PLAIN[usize::from(byte)] || (!keep_fragment && byte == b'#');
    // Paths rarely need escaping: one pass to find out, then one copy.
    let Some(first) = text.bytes().position(needs_escape) else {
        return text.to_owned();
    };
    let mut out = String::with_capacity(text.len() + 8);
    out.push_str(text.get(..first).unwrap_or_default());
    for byte in text.bytes().skip(first) {
        if needs_escape(byte) {
            out.push('%');
            out.push(hex_digit(byte >> 4));
            out.push(hex_digit(byte & 0xf));
        } else {
            out.push(char::from(byte));
        }
    }
    out
}

/// Bytes that go into a URL as they are: visible ASCII but `"<>\^`{|}` (`#` is decided by the
/// caller).
static PLAIN: [bool; 256] = {
    let mut table = [false; 256];
    let mut b: u8 = 0;
    loop {
        table[b as usize] = b.is_ascii_graphic()
            && !matches!(
                b,
                b'"' | b'<' | b'>' | b'\\' | b'^' | b'`' | b'{' | b'|' | b'}'
            );
        if b == u8::MAX {
            break table;
        }
        b += 1;
    }
};

fn hex_digit(nibble: u8) -> char {
    char::from(b"0123456789ABCDEF"[usize::from(nibble & 0xf)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitting_and_joining() {
        assert_eq!(split_query("/a?b=1?c"), ("/a", Some("b=1?c")));
        assert_eq!(split_query("/a"), ("/a", None));
        assert_eq!(join("/a", Some("b")), "/a?b");
        assert_eq!(join("/a", None), "/a");
    }

    #[test]
    fn query_rules_follow_mod_rewrite() {
        // No `?` in the substitution: the query is kept.
        assert_eq!(
            merge_query(None, Some("x=1"), false, false).as_deref(),
            Some("x=1")
        );
        // `?new`: replaces it...
        assert_eq!(
            merge_query(Some("y=2"), Some("x=1"), false, false).as_deref(),
            Some("y=2")
        );
        // ...unless QSA appends the old one.
        assert_eq!(
            merge_query(Some("y=2"), Some("x=1"), true, false).as_deref(),
            Some("y=2&x=1")
        );
        assert_eq!(
            merge_query(Some(""), Some("x=1"), true, false).as_deref(),
            Some("x=1")
        );
        assert_eq!(
            merge_query(Some("y=2"), None, true, false).as_deref(),
            Some("y=2")
        );
        // A bare `?` drops it.
        assert_eq!(merge_query(Some(""), Some("x=1"), false, false), None);
        // QSD drops it whatever the substitution says.
        assert_eq!(merge_query(None, Some("x=1"), false, true), None);
        assert_eq!(
            merge_query(Some("y=2"), Some("x=1"), false, true).as_deref(),
            Some("y=2")
        );
    }

    #[test]
    fn escaping_keeps_encoded_text_and_fixes_the_rest() {
        assert_eq!(escape("/a%20b/c?d=e&f", false), "/a%20b/c?d=e&f");
        assert_eq!(escape("/a b\r\n\"é", false), "/a%20b%0D%0A%22%C3%A9");
        assert_eq!(escape("/a#top", false), "/a%23top");
        assert_eq!(escape("/a#top", true), "/a#top");
        assert_eq!(escape("/{x}|^", false), "/%7Bx%7D%7C%5E");
    }

    /// Any text (proptest): each byte is kept exactly when it may stand in a URL, otherwise
    /// written as `%XX` with upper-case hex.
    #[cfg(not(target_arch = "wasm32"))]
    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn escaped_by_definition(text: &str, keep_fragment: bool) -> String {
            text.bytes()
                .map(|b| {
                    let plain = b.is_ascii_graphic()
                        && !b"\"<>\\^`{|}".contains(&b)
                        && (keep_fragment || b != b'#');
                    if plain {
                        char::from(b).to_string()
                    } else {
                        format!("%{b:02X}")
                    }
                })
                .collect()
        }

        proptest! {
            #[test]
            fn escape_is_the_byte_by_byte_definition(text in "(?s).{0,40}", keep in any::<bool>()) {
                prop_assert_eq!(escape(&text, keep), escaped_by_definition(&text, keep));
            }
        }
    }
}

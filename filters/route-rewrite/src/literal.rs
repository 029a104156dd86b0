//! A fast path for the commonest rule patterns: a literal prefix anchored at the start, then
//! perhaps `(.*)`, then perhaps `$`, as in `^/api/(.*)$`. Such a pattern is decided with a prefix
//! comparison instead of regex-lite's PikeVM, which was the largest single cost of the filter's
//! own code per request (BENCHMARKS.md). Every other pattern, and every case-insensitive rule,
//! keeps going through the regex; so do these, for everything but matching itself (group counts,
//! validation).
//!
//! The results are the regex's to the byte: `.` does not match `\n` (regex-lite's default), and `$`
//! without the `m` flag is the end of the subject. The tests compare both on many subjects.

use wasmgate_filter_common::text::before_ascii;

/// A pattern of the shapes `^L`, `^L$`, `^L(.*)`, `^L(.*)$` with `L` a literal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiteralPattern {
    prefix: String,
    /// `(.*)` follows the literal.
    captures_rest: bool,
    /// `$` ends the pattern.
    anchored_end: bool,
}

/// Punctuation that stands for itself in a pattern, unescaped, outside a class. Deliberately
/// short: anything with a meaning anywhere in regex syntax (`#` under `x`, a space) is left out.
const PLAIN_PUNCTUATION: &str = "/_-:%=,@;~!'&<>\"";
/// Punctuation that a backslash turns into a literal.
const ESCAPABLE: &str = r"\.+*?()|[]{}^$/-#&~";

impl LiteralPattern {
    /// The pattern's literal form, if it has one of the four shapes (`None` otherwise: the regex
    /// decides).
    pub fn parse(pattern: &str) -> Option<Self> {
        let mut chars = pattern.strip_prefix('^')?.chars();
        let mut prefix = String::new();
        let rest = loop {
            let before = chars.as_str();
            match chars.next() {
                Some('\\') => match chars.next() {
                    Some(c) if ESCAPABLE.contains(c) => prefix.push(c),
                    _ => return None, // `\d`, `\w`, …: classes, not literals
                },
                Some(c) if c.is_ascii_alphanumeric() || PLAIN_PUNCTUATION.contains(c) => {
                    prefix.push(c);
                }
                _ => break before,
            }
        };
        let (captures_rest, anchored_end) = match rest {
            "" => (false, false),
            "$" => (false, true),
            "(.*)" => (true, false),
            "(.*)$" => (true, true),
            _ => return None,
        };
        Some(Self {
            prefix,
            captures_rest,
            anchored_end,
        })
    }

    /// Whether `subject` matches.
    pub fn is_match(&self, subject: &str) -> bool {
        self.groups(subject).is_some()
    }

    /// The groups of a match as the regex would give them: the whole match, then the rest after
    /// the literal if the pattern captures it.
    pub fn groups<'s>(&self, subject: &'s str) -> Option<Vec<&'s str>> {
        let captures = self.captures(subject)?;
        Some(match captures.rest {
            Some(rest) => vec![captures.whole, rest],
            None => vec![captures.whole],
        })
    }

    /// `groups` without the list: what the shortcut (`shortcut.rs`) expands its template from.
    pub fn captures<'s>(&self, subject: &'s str) -> Option<Captures<'s>> {
        let rest = subject.strip_prefix(self.prefix.as_str())?;
        let literal = subject.get(..self.prefix.len())?;
        match (self.captures_rest, self.anchored_end) {
            (false, false) => Some(Captures::whole(literal)),
            (false, true) => rest.is_empty().then(|| Captures::whole(literal)),
            (true, anchored_end) => {
                // `.` stops at a newline: unanchored, the group ends there; anchored, a newline
                // anywhere in the rest means no match.
                let line = before_ascii(rest, b'\n');
                if anchored_end && line.len() != rest.len() {
                    return None;
                }
                let whole = subject.get(..self.prefix.len() + line.len())?;
                Some(Captures {
                    whole,
                    rest: Some(line),
                })
            }
        }
    }
}

/// A match of a `LiteralPattern`: `$0`, and `$1` when the pattern captures the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Captures<'s> {
    pub whole: &'s str,
    pub rest: Option<&'s str>,
}

impl<'s> Captures<'s> {
    fn whole(whole: &'s str) -> Self {
        Self { whole, rest: None }
    }

    /// Group `index` as the regex numbers them; a group the pattern does not have is empty, as a
    /// template expands it.
    pub fn group(&self, index: usize) -> &'s str {
        match index {
            0 => self.whole,
            1 => self.rest.unwrap_or(""),
            _ => "",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use regex_lite::Regex;

    const SUBJECTS: &[&str] = &[
        "",
        "/",
        "/api",
        "/api/",
        "/api/notes",
        "/api/notes?x=1&y=%20",
        "/API/notes",
        "/api/a\nb",
        "/api/\n",
        "/apix",
        "/a.i/x",
        "/a-b_c:d/e",
        "x/api/notes",
        "/api/é/ü",
    ];

    /// The regex's own groups, as text.
    fn by_regex(pattern: &str, subject: &str) -> Option<Vec<String>> {
        let regex = Regex::new(pattern).unwrap();
        regex.captures(subject).map(|caps| {
            caps.iter()
                .map(|m| m.map_or_else(String::new, |m| m.as_str().to_string()))
                .collect()
        })
    }

    #[test]
    fn the_four_shapes_give_the_regex_results_exactly() {
        let patterns = [
            "^/api/(.*)$",
            "^/api/(.*)",
            "^/api/",
            "^/api$",
            "^/api",
            "^$",
            "^",
            "^(.*)$",
            r"^/a\.i/(.*)$",
            "^/a-b_c:d/(.*)$",
            r"^\/api\/(.*)$",
            r"^/a\-b_c:d/(.*)$",
            r"^/x\&\~\#\?\+(.*)$",
        ];
        for pattern in patterns {
            let literal = LiteralPattern::parse(pattern)
                .unwrap_or_else(|| panic!("{pattern} has a literal form"));
            for subject in SUBJECTS {
                let ours = literal
                    .groups(subject)
                    .map(|g| g.into_iter().map(String::from).collect::<Vec<_>>());
                assert_eq!(ours, by_regex(pattern, subject), "{pattern} on {subject:?}");
                assert_eq!(literal.is_match(subject), ours.is_some());
            }
        }
    }

    #[test]
    fn anything_else_is_left_to_the_regex() {
        for pattern in [
            "/api/(.*)$",     // not anchored at the start
            "^/api/(.+)$",    // another quantifier
            "^/api/(.*)/x$",  // more after the group
            r"^/api/\d+$",    // a class
            "^/api/[a-z]*",   // a class
            "^/a.i/",         // `.` is any character, not a dot
            "^/api|^/v1",     // an alternation
            "^/api/(?:.*)$",  // a non-capturing group
            "^/api/(?s:.*)$", // `.` matching newlines
            "^/api /x",       // a space (`x` mode would ignore it)
            "^/api#x",        // a comment under `x` mode
            r"^/api\/x\q",    // an unknown escape
        ] {
            assert_eq!(LiteralPattern::parse(pattern), None, "{pattern}");
        }
    }

    /// Generated patterns and subjects (proptest): whenever a pattern parses as a literal shape,
    /// the regex engine accepts it too and finds exactly the same matches and groups.
    #[cfg(not(target_arch = "wasm32"))]
    mod properties {
        use super::*;
        use proptest::collection::vec;
        use proptest::prelude::*;

        /// Pieces of patterns: literal text, escapes (known and unknown), the `(.*)` group and
        /// the metacharacters that must keep a pattern away from the fast path.
        fn pattern() -> impl Strategy<Value = String> {
            let piece = prop_oneof![
                Just("/"),
                Just("api"),
                Just("a"),
                Just("-"),
                Just("_"),
                Just(":"),
                Just(r"\."),
                Just(r"\/"),
                Just(r"\-"),
                Just(r"\q"),
                Just(r"\d"),
                Just("."),
                Just("(.*)"),
                Just("(.+)"),
                Just("*"),
                Just("("),
                Just(")"),
                Just("$"),
                Just("^"),
                Just("|"),
                Just("[a]"),
                Just(" "),
                Just("#"),
                Just("é"),
            ];
            (any::<bool>(), vec(piece, 0..6)).prop_map(|(anchored, pieces)| {
                let body: String = pieces.concat();
                if anchored { format!("^{body}") } else { body }
            })
        }

        fn subject() -> impl Strategy<Value = String> {
            let piece = prop_oneof![
                Just("/"),
                Just("api"),
                Just("API"),
                Just("a"),
                Just("."),
                Just("-"),
                Just("_"),
                Just(":"),
                Just("\n"),
                Just("é"),
                Just("x"),
                Just("?q=1"),
            ];
            vec(piece, 0..6).prop_map(|pieces| pieces.concat())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]
            #[test]
            fn literal_shapes_match_what_the_regex_matches(
                pattern in pattern(),
                subjects in vec(subject(), 1..6),
            ) {
                let Some(literal) = LiteralPattern::parse(&pattern) else {
                    return Ok(());
                };
                prop_assert!(
                    Regex::new(&pattern).is_ok(),
                    "{} has a literal form but is not a regex", pattern
                );
                for subject in &subjects {
                    let ours = literal
                        .groups(subject)
                        .map(|g| g.into_iter().map(String::from).collect::<Vec<_>>());
                    prop_assert_eq!(&ours, &by_regex(&pattern, subject), "{} on {:?}", pattern, subject);
                    prop_assert_eq!(literal.is_match(subject), ours.is_some());
                }
            }
        }
    }
}

//! Splits one line of the rule language into its words and its `[FLAGS]`:
//! `PATTERN SUBSTITUTION [FLAGS]` or `TESTSTRING CONDPATTERN [FLAGS]`.
//! Words are separated by whitespace; a word containing spaces is written in double quotes
//! (inside them, `\"` is a quote and `\\` a backslash).

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub words: Vec<String>,
    pub flags: Vec<String>,
}

pub fn split(text: &str) -> Result<Line, String> {
    let mut words = Vec::new();
    let mut flags = None;
    let mut rest = text.trim_start();
    while !rest.is_empty() {
        if flags.is_some() {
            return Err(format!(
                "unexpected `{}` after the flags; the flags come last",
                rest.trim_end()
            ));
        }
        // After the first two words, a word starting with `[` is the flags (a pattern such as
        // `[a-z]+` may start with `[` too, so only the third word is taken as flags).
        if words.len() >= 2 && rest.starts_with('[') {
            let end = rest
                .find(']')
                .ok_or_else(|| format!("flags `{}` are not closed by `]`", rest.trim_end()))?;
            let inner = rest.get(1..end).unwrap_or("");
            flags = Some(
                inner
                    .split(',')
                    .map(|f| f.trim().to_string())
                    .collect::<Vec<_>>(),
            );
            rest = rest.get(end + 1..).unwrap_or("").trim_start();
            continue;
        }
        let (word, after) = if rest.starts_with('"') {
            quoted(rest)?
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            (
                rest.get(..end).unwrap_or(rest).to_string(),
                rest.get(end..).unwrap_or(""),
            )
        };
        words.push(word);
        rest = after.trim_start();
    }
    Ok(Line {
        words,
        flags: flags.unwrap_or_default(),
    })
}

/// Reads a `"..."` word at the start of `text`; returns it and what follows.
fn quoted(text: &str) -> Result<(String, &str), String> {
    let mut word = String::new();
    let mut chars = text.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => {
                let after = text.get(i + 1..).unwrap_or("");
                if after.chars().next().is_some_and(|c| !c.is_whitespace()) {
                    return Err(format!(
                        "a space must follow the closing quote of \"{word}\""
                    ));
                }
                return Ok((word, after));
            }
            '\\' => match chars.next() {
                Some((_, next @ ('"' | '\\'))) => word.push(next),
                Some((_, next)) => {
                    // Other backslashes belong to the regex (`\d`), keep them.
                    word.push('\\');
                    word.push(next);
                }
                None => break,
            },
            _ => word.push(c),
        }
    }
    Err("a double quote is not closed".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &Line) -> Vec<&str> {
        line.words.iter().map(String::as_str).collect()
    }

    #[test]
    fn the_seed_rule() {
        let line = split("^/api/(.*)$ http://localhost:3002/api/$1 [P]").unwrap();
        assert_eq!(
            words(&line),
            ["^/api/(.*)$", "http://localhost:3002/api/$1"]
        );
        assert_eq!(line.flags, ["P"]);
    }

    #[test]
    fn flags_are_optional_and_split_at_commas() {
        assert!(split("^/a /b").unwrap().flags.is_empty());
        assert_eq!(
            split("  ^/a   /b   [R=301, L]  ").unwrap().flags,
            ["R=301", "L"]
        );
    }

    #[test]
    fn a_bracketed_pattern_is_not_flags() {
        let line = split("[a-z]+ /x").unwrap();
        assert_eq!(words(&line), ["[a-z]+", "/x"]);
    }

    #[test]
    fn quotes_allow_spaces_and_keep_regex_escapes() {
        let line = split(r#""^/a b/(\d+)$" "/c \"d\"" [L]"#).unwrap();
        assert_eq!(words(&line), [r"^/a b/(\d+)$", "/c \"d\""]);
    }

    #[test]
    fn malformed_lines_are_refused() {
        assert!(split("^/a /b [L").is_err_and(|e| e.contains("not closed by `]`")));
        assert!(split("^/a /b [L] extra").is_err_and(|e| e.contains("after the flags")));
        assert!(split("\"^/a /b").is_err_and(|e| e.contains("not closed")));
        assert!(split("\"^/a\"x /b").is_err_and(|e| e.contains("closing quote")));
    }
}

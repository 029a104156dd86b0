//! Substitution and condition test strings: literal text with `$N`/`${name}` (groups of the
//! rule's pattern), `%N` (groups of the last matched condition) and `%{VAR}` (server variables).
//! Parsed once at configuration time; expanding one never fails.

use regex_lite::Regex;
use std::borrow::Cow;

use crate::variables::Variable;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    /// `$N`, or `${name}` once resolved against the rule's pattern.
    RuleGroup(usize),
    /// `${name}` before `resolve` turned it into a group number.
    RuleNamed(String),
    /// `%N`.
    CondGroup(usize),
    Var(Variable),
}

/// Where the values of a template come from while a request is processed.
pub trait Values {
    fn rule_group(&self, index: usize) -> &str;
    fn cond_group(&self, index: usize) -> &str;
    /// Borrowed where the value is at hand (a request header), so expanding copies it once.
    fn variable(&self, variable: &Variable) -> Cow<'_, str>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
    /// Bytes of literal text, to size an expansion once: growing it as the pieces go in took two
    /// reallocations for the usual path.
    literal_len: usize,
}

/// Room an expansion makes for what the groups and variables put in, beyond its literal text:
/// a typical path's worth.
const EXPANSION_HEADROOM: usize = 64;

impl Template {
    /// Parses `text`. `\` makes the next character literal (`\$`, `\%`, `\\`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some(next) => literal.push(next),
                    None => return Err("a `\\` at the end escapes nothing".into()),
                },
                '$' | '%' => {
                    let piece = match chars.peek().and_then(|d| d.to_digit(10)) {
                        Some(digit) => {
                            chars.next();
                            // A single digit, as in mod_rewrite: `$10` is `$1` then `0`.
                            let n = digit as usize;
                            if c == '$' {
                                Piece::RuleGroup(n)
                            } else {
                                Piece::CondGroup(n)
                            }
                        }
                        None if chars.peek() == Some(&'{') => {
                            chars.next();
                            let mut name = String::new();
                            loop {
                                match chars.next() {
                                    Some('}') => break,
                                    Some(ch) => name.push(ch),
                                    None => {
                                        return Err(format!("`{c}{{{name}` is not closed by `}}`"));
                                    }
                                }
                            }
                            if c == '$' {
                                rule_reference(&name)?
                            } else {
                                Piece::Var(Variable::parse(&name)?)
                            }
                        }
                        // A lone `%` is literal: `%` also starts percent-encodings such as `%2F`.
                        _ if c == '%' => {
                            literal.push('%');
                            continue;
                        }
                        _ => {
                            return Err(
                                "`$` must be followed by a digit or `{name}`; write `\\$` for a literal `$`"
                                    .into(),
                            );
                        }
                    };
                    if !literal.is_empty() {
                        pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                    }
                    pieces.push(piece);
                }
                _ => literal.push(c),
            }
        }
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        let literal_len = pieces
            .iter()
            .map(|p| match p {
                Piece::Literal(text) => text.len(),
                _ => 0,
            })
            .sum();
        Ok(Self {
            pieces,
            literal_len,
        })
    }

    /// Checks every reference against what will be available when the template is expanded:
    /// the rule's pattern (`None` for a negated pattern, which captures nothing) and the largest
    /// group count among the rule's conditions (`None` when it has no capturing condition).
    pub fn resolve(
        &mut self,
        pattern: Option<&Regex>,
        cond_groups: Option<usize>,
    ) -> Result<(), String> {
        for piece in &mut self.pieces {
            match piece {
                Piece::RuleGroup(n) => {
                    let groups = pattern.map_or(0, |p| p.captures_len());
                    if pattern.is_none() {
                        return Err(format!("`${n}`: a negated pattern captures nothing"));
                    }
                    if *n >= groups {
                        return Err(format!(
                            "`${n}` refers to group {n} but the pattern has {} group(s)",
                            groups.saturating_sub(1)
                        ));
                    }
                }
                Piece::RuleNamed(name) => {
                    let index = pattern.and_then(|p| {
                        p.capture_names()
                            .position(|candidate| candidate == Some(name.as_str()))
                    });
                    match index {
                        Some(i) => *piece = Piece::RuleGroup(i),
                        None => {
                            return Err(format!(
                                "`${{{name}}}`: the pattern has no group named `{name}`"
                            ));
                        }
                    }
                }
                Piece::CondGroup(n) => match cond_groups {
                    None => {
                        return Err(format!(
                            "`%{n}` refers to a condition's group but no condition of this rule captures \
                             anything; write `\\%{n}` for a literal `%{n}`"
                        ));
                    }
                    Some(groups) if *n > groups => {
                        return Err(format!(
                            "`%{n}` refers to group {n} but the rule's conditions have at most {groups} group(s)"
                        ));
                    }
                    Some(_) => {}
                },
                Piece::Literal(_) | Piece::Var(_) => {}
            }
        }
        Ok(())
    }

    /// Refuses `%N` (used in condition test strings, where it would be ambiguous).
    pub fn without_condition_groups(&self) -> Result<(), String> {
        match self.pieces.iter().find_map(|p| match p {
            Piece::CondGroup(n) => Some(*n),
            _ => None,
        }) {
            Some(n) => Err(format!(
                "`%{n}` cannot be used in a condition; write `\\%{n}` for a literal `%{n}`"
            )),
            None => Ok(()),
        }
    }

    /// The literal text the template starts with, if it starts with one.
    pub fn literal_prefix(&self) -> &str {
        match self.pieces.first() {
            Some(Piece::Literal(text)) => text,
            _ => "",
        }
    }

    /// True when the template starts with `%{REQUEST_URI}`, which always starts with `/`.
    pub fn starts_with_request_uri(&self) -> bool {
        matches!(self.pieces.first(), Some(Piece::Var(Variable::RequestUri)))
    }

    /// True when the template contains no reference at all.
    pub fn is_literal(&self) -> bool {
        self.pieces.iter().all(|p| matches!(p, Piece::Literal(_)))
    }

    /// True when the template refers to nothing but the rule's groups (`$N`): expanding it reads
    /// no request header and no condition (`shortcut.rs`).
    pub fn refers_only_to_rule_groups(&self) -> bool {
        self.pieces
            .iter()
            .all(|p| matches!(p, Piece::Literal(_) | Piece::RuleGroup(_)))
    }

    pub fn expand(&self, values: &dyn Values) -> String {
        let mut out = String::with_capacity(self.literal_len + EXPANSION_HEADROOM);
        for piece in &self.pieces {
            match piece {
                Piece::Literal(text) => out.push_str(text),
                Piece::RuleGroup(n) => out.push_str(values.rule_group(*n)),
                Piece::CondGroup(n) => out.push_str(values.cond_group(*n)),
                Piece::Var(v) => out.push_str(&values.variable(v)),
                // `resolve` turns every named reference into a group number; an unresolved one
                // (never produced by the compiler) expands to nothing rather than panicking.
                Piece::RuleNamed(_) => {}
            }
        }
        out
    }
}

/// `${3}` is group 3, `${name}` a named group.
fn rule_reference(name: &str) -> Result<Piece, String> {
    if name.is_empty() {
        return Err("`${}` names no group".into());
    }
    if name.bytes().all(|b| b.is_ascii_digit()) {
        return name
            .parse()
            .map(Piece::RuleGroup)
            .map_err(|_| format!("`${{{name}}}` is not a usable group number"));
    }
    Ok(Piece::RuleNamed(name.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed;
    impl Values for Fixed {
        fn rule_group(&self, index: usize) -> &str {
            ["/api/notes", "notes", "7"]
                .get(index)
                .copied()
                .unwrap_or("")
        }
        fn cond_group(&self, index: usize) -> &str {
            ["beta", "b"].get(index).copied().unwrap_or("")
        }
        fn variable(&self, variable: &Variable) -> Cow<'_, str> {
            Cow::Owned(format!("<{variable:?}>"))
        }
    }

    fn compiled(text: &str, pattern: &str, conds: Option<usize>) -> Result<Template, String> {
        let regex = Regex::new(pattern).map_err(|e| e.to_string())?;
        let mut t = Template::parse(text)?;
        t.resolve(Some(&regex), conds)?;
        Ok(t)
    }

    #[test]
    fn expands_groups_named_groups_condition_groups_and_variables() {
        let t = compiled(
            "/v2/$1/${id}?t=%1&h=%{HTTP_HOST}",
            "^/api/(\\w+)/(?<id>\\d+)$",
            Some(1),
        )
        .unwrap();
        assert_eq!(t.expand(&Fixed), "/v2/notes/7?t=b&h=<Host>");
    }

    #[test]
    fn backslash_makes_dollar_and_percent_literal() {
        let t = compiled("/a\\$1\\%1\\\\", "^(x)$", None).unwrap();
        assert!(t.is_literal());
        assert_eq!(t.expand(&Fixed), "/a$1%1\\");
    }

    #[test]
    fn lone_percent_stays_literal() {
        let t = compiled("/a%zz%", "^x$", None).unwrap();
        assert_eq!(t.expand(&Fixed), "/a%zz%");
    }

    #[test]
    fn group_beyond_the_pattern_is_refused() {
        let err = compiled("/$5", "^/(a)/(b)$", None).unwrap_err();
        assert_eq!(err, "`$5` refers to group 5 but the pattern has 2 group(s)");
    }

    #[test]
    fn unknown_named_group_is_refused() {
        let err = compiled("/${nope}", "^/(?<id>a)$", None).unwrap_err();
        assert!(err.contains("no group named `nope`"), "{err}");
    }

    #[test]
    fn condition_group_without_capturing_condition_is_refused() {
        let err = compiled("/%1", "^/a$", None).unwrap_err();
        assert!(err.contains("no condition of this rule captures"), "{err}");
        let err = compiled("/%3", "^/a$", Some(2)).unwrap_err();
        assert!(err.contains("at most 2"), "{err}");
    }

    #[test]
    fn negated_pattern_has_no_groups() {
        let mut t = Template::parse("/$0").unwrap();
        assert!(t.resolve(None, None).is_err_and(|e| e.contains("negated")));
    }

    #[test]
    fn malformed_templates_are_refused() {
        assert!(Template::parse("/a$").is_err());
        assert!(Template::parse("/a$x").is_err());
        assert!(Template::parse("/a${1").is_err_and(|e| e.contains("not closed")));
        assert!(Template::parse("/a%{HTTP_HOST").is_err());
        assert!(Template::parse("/a%{NOPE}").is_err_and(|e| e.contains("unknown variable")));
        assert!(Template::parse("/a\\").is_err());
        assert!(Template::parse("/${}").is_err());
    }

    #[test]
    fn condition_groups_can_be_refused() {
        assert!(
            Template::parse("%1")
                .unwrap()
                .without_condition_groups()
                .is_err()
        );
        assert!(
            Template::parse("%{HTTP_HOST}")
                .unwrap()
                .without_condition_groups()
                .is_ok()
        );
    }

    #[test]
    fn literal_prefix_and_request_uri_start() {
        assert_eq!(Template::parse("/x/$1").unwrap().literal_prefix(), "/x/");
        assert_eq!(Template::parse("$1").unwrap().literal_prefix(), "");
        assert!(
            Template::parse("%{REQUEST_URI}?a")
                .unwrap()
                .starts_with_request_uri()
        );
    }
}

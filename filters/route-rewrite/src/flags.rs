//! The `[FLAGS]` of a rule and of a condition, with Apache's short and long names.

/// What a rule does once it matched, beyond rewriting the path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Rewrite the path (or leave it, for `-`) and go on.
    Rewrite,
    /// `P`: send the request to the upstream that the target URL's authority is mapped to.
    Proxy,
    /// `R[=code]`: answer with a redirect.
    Redirect(u16),
    /// `F`: answer 403.
    Forbidden,
    /// `G`: answer 410.
    Gone,
}

/// The flags of one rule, checked for conflicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleFlags {
    pub action: Action,
    /// `L`/`END`: stop after this rule.
    pub last: bool,
    /// `N`: start again from the first rule with the rewritten path.
    pub next: bool,
    /// `C`: when this rule does not apply, skip the rules chained after it.
    pub chain: bool,
    /// `S=n`: when this rule applies, skip the next `n` rules.
    pub skip: usize,
    /// `NC`: the pattern ignores case.
    pub nocase: bool,
    /// `QSA`: append the current query to a substitution that has its own.
    pub qsappend: bool,
    /// `QSD`: drop the current query.
    pub qsdiscard: bool,
    /// `MQ` (wasmgate's own): match the pattern against `path?query` instead of the path.
    pub match_query: bool,
}

impl Default for RuleFlags {
    fn default() -> Self {
        Self {
            action: Action::Rewrite,
            last: false,
            next: false,
            chain: false,
            skip: 0,
            nocase: false,
            qsappend: false,
            qsdiscard: false,
            match_query: false,
        }
    }
}

/// Apache flags that mean something there but have no equivalent here; named in the error so the
/// operator knows the flag was recognised, not mistyped.
const UNSUPPORTED: &[&str] = &[
    "B",
    "BNP",
    "BCTLS",
    "BNE",
    "CO",
    "COOKIE",
    "DPI",
    "E",
    "ENV",
    "H",
    "HANDLER",
    "NS",
    "NOSUBREQ",
    "PT",
    "PASSTHROUGH",
    "T",
    "TYPE",
    "UNSAFEALLOW3F",
    "UNSAFEPREFIXSTAT",
];

impl RuleFlags {
    /// Parses flag words (already split at commas), e.g. `["P", "L"]` or `["R=301"]`.
    pub fn parse<S: AsRef<str>>(words: &[S]) -> Result<Self, String> {
        let mut flags = Self::default();
        let mut seen: Vec<String> = Vec::new();
        for word in words {
            let word = word.as_ref().trim();
            let (name, value) = match word.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim())),
                None => (word, None),
            };
            let upper = name.to_ascii_uppercase();
            let canonical = canonical_name(&upper).ok_or_else(|| {
                if UNSUPPORTED.contains(&upper.as_str()) {
                    format!("flag `{word}` is not supported by route-rewrite")
                } else if upper.is_empty() {
                    "empty flag".to_string()
                } else {
                    format!("unknown flag `{word}`")
                }
            })?;
            if seen.iter().any(|s| s == canonical) {
                return Err(format!("flag `{canonical}` is given twice"));
            }
            seen.push(canonical.to_string());
            let takes_value = matches!(canonical, "R" | "S");
            if value.is_some() && !takes_value {
                return Err(format!("flag `{canonical}` takes no value (`{word}`)"));
            }
            match canonical {
                "P" => flags.set_action(Action::Proxy)?,
                "R" => flags.set_action(Action::Redirect(redirect_status(value)?))?,
                "F" => flags.set_action(Action::Forbidden)?,
                "G" => flags.set_action(Action::Gone)?,
                "L" => flags.last = true,
                "N" => flags.next = true,
                "C" => flags.chain = true,
                "S" => flags.skip = skip_count(value)?,
                "NC" => flags.nocase = true,
                "QSA" => flags.qsappend = true,
                "QSD" => flags.qsdiscard = true,
                "MQ" => flags.match_query = true,
                // NE: Apache escapes the result unless told not to; route-rewrite never
                // re-escapes `%` or `#` in a redirect, so NE changes nothing and is accepted for
                // rules carried over from Apache.
                _ => {}
            }
        }
        if flags.qsappend && flags.qsdiscard {
            return Err("flags `QSA` and `QSD` contradict each other".into());
        }
        if flags.next && flags.action != Action::Rewrite {
            return Err("flag `N` only makes sense on a rule that rewrites the path".into());
        }
        Ok(flags)
    }

    fn set_action(&mut self, action: Action) -> Result<(), String> {
        if self.action != Action::Rewrite {
            return Err(format!(
                "flags `{}` and `{}` cannot be combined",
                action_flag(self.action),
                action_flag(action)
            ));
        }
        self.action = action;
        Ok(())
    }

    /// Whether the rule ends processing once it applied: every answer does, as does `P`.
    pub fn stops(&self) -> bool {
        self.last || self.action != Action::Rewrite
    }
}

fn action_flag(action: Action) -> &'static str {
    match action {
        Action::Rewrite => "",
        Action::Proxy => "P",
        Action::Redirect(_) => "R",
        Action::Forbidden => "F",
        Action::Gone => "G",
    }
}

fn canonical_name(upper: &str) -> Option<&'static str> {
    Some(match upper {
        "P" | "PROXY" => "P",
        "R" | "REDIRECT" => "R",
        "F" | "FORBIDDEN" => "F",
        "G" | "GONE" => "G",
        "L" | "LAST" | "END" => "L",
        "N" | "NEXT" => "N",
        "C" | "CHAIN" => "C",
        "S" | "SKIP" => "S",
        "NC" | "NOCASE" => "NC",
        "QSA" | "QSAPPEND" => "QSA",
        "QSD" | "QSDISCARD" => "QSD",
        "NE" | "NOESCAPE" => "NE",
        "MQ" | "MATCHQUERY" => "MQ",
        _ => return None,
    })
}

fn redirect_status(value: Option<&str>) -> Result<u16, String> {
    match value {
        None => Ok(302),
        Some("301") => Ok(301),
        Some("302") => Ok(302),
        Some("303") => Ok(303),
        Some("307") => Ok(307),
        Some("308") => Ok(308),
        Some(other) => Err(format!(
            "`R={other}`: the redirect status must be 301, 302, 303, 307 or 308"
        )),
    }
}

fn skip_count(value: Option<&str>) -> Result<usize, String> {
    match value.map(str::parse::<usize>) {
        Some(Ok(n)) if n > 0 => Ok(n),
        _ => Err("flag `S` needs a positive number of rules to skip, e.g. `S=2`".into()),
    }
}

/// The flags of a condition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CondFlags {
    /// `NC`: compare ignoring case.
    pub nocase: bool,
    /// `OR`: this condition or the next one (instead of and).
    pub or_next: bool,
}

impl CondFlags {
    pub fn parse<S: AsRef<str>>(words: &[S]) -> Result<Self, String> {
        let mut flags = Self::default();
        for word in words {
            let word = word.as_ref().trim();
            match word.to_ascii_uppercase().as_str() {
                "NC" | "NOCASE" if !flags.nocase => flags.nocase = true,
                "OR" | "ORNEXT" if !flags.or_next => flags.or_next = true,
                "NC" | "NOCASE" | "OR" | "ORNEXT" => {
                    return Err(format!("condition flag `{word}` is given twice"));
                }
                _ => {
                    return Err(format!(
                        "unknown condition flag `{word}` (conditions take NC and OR)"
                    ));
                }
            }
        }
        Ok(flags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(words: &[&str]) -> Result<RuleFlags, String> {
        RuleFlags::parse(words)
    }

    #[test]
    fn no_flags_rewrites_and_goes_on() {
        let f = parse(&[]).unwrap();
        assert_eq!(f, RuleFlags::default());
        assert!(!f.stops());
    }

    #[test]
    fn every_flag_sets_its_field() {
        assert_eq!(parse(&["P"]).unwrap().action, Action::Proxy);
        assert_eq!(parse(&["R"]).unwrap().action, Action::Redirect(302));
        for code in [301, 302, 303, 307, 308] {
            assert_eq!(
                parse(&[format!("R={code}").as_str()]).unwrap().action,
                Action::Redirect(code)
            );
        }
        assert_eq!(parse(&["F"]).unwrap().action, Action::Forbidden);
        assert_eq!(parse(&["G"]).unwrap().action, Action::Gone);
        assert!(parse(&["L"]).unwrap().last);
        assert!(parse(&["END"]).unwrap().last);
        assert!(parse(&["N"]).unwrap().next);
        assert!(parse(&["C"]).unwrap().chain);
        assert_eq!(parse(&["S=3"]).unwrap().skip, 3);
        assert!(parse(&["NC"]).unwrap().nocase);
        assert!(parse(&["QSA"]).unwrap().qsappend);
        assert!(parse(&["QSD"]).unwrap().qsdiscard);
        assert!(parse(&["MQ"]).unwrap().match_query);
        assert_eq!(parse(&["NE"]).unwrap(), RuleFlags::default());
    }

    #[test]
    fn long_names_and_any_case_are_accepted() {
        let f = parse(&["proxy", "Last", "nocase", "qsappend", "chain"]).unwrap();
        assert_eq!(f.action, Action::Proxy);
        assert!(f.last && f.nocase && f.qsappend && f.chain);
        assert_eq!(
            parse(&["redirect=301"]).unwrap().action,
            Action::Redirect(301)
        );
    }

    #[test]
    fn answers_and_proxy_stop_processing() {
        for words in [["P"], ["R"], ["F"], ["G"], ["L"]] {
            assert!(parse(&words).unwrap().stops(), "{words:?}");
        }
    }

    #[test]
    fn errors_are_precise() {
        assert_eq!(parse(&["X"]).unwrap_err(), "unknown flag `X`");
        assert_eq!(
            parse(&["PT"]).unwrap_err(),
            "flag `PT` is not supported by route-rewrite"
        );
        assert!(
            parse(&["R=300"])
                .unwrap_err()
                .contains("301, 302, 303, 307 or 308")
        );
        assert!(parse(&["R=abc"]).is_err());
        assert_eq!(
            parse(&["P", "R"]).unwrap_err(),
            "flags `P` and `R` cannot be combined"
        );
        assert_eq!(
            parse(&["F", "G"]).unwrap_err(),
            "flags `F` and `G` cannot be combined"
        );
        assert_eq!(
            parse(&["L", "last"]).unwrap_err(),
            "flag `L` is given twice"
        );
        assert!(parse(&["QSA", "QSD"]).unwrap_err().contains("contradict"));
        assert!(parse(&["S"]).is_err());
        assert!(parse(&["S=0"]).is_err());
        assert!(parse(&["S=-1"]).is_err());
        assert_eq!(
            parse(&["L=1"]).unwrap_err(),
            "flag `L` takes no value (`L=1`)"
        );
        assert!(parse(&["N", "R"]).is_err());
        assert_eq!(parse(&[""]).unwrap_err(), "empty flag");
    }

    #[test]
    fn condition_flags() {
        let f = CondFlags::parse(&["nc", "OR"]).unwrap();
        assert!(f.nocase && f.or_next);
        assert!(CondFlags::parse(&["L"]).is_err_and(|e| e.contains("NC and OR")));
        assert!(CondFlags::parse(&["NC", "NOCASE"]).is_err_and(|e| e.contains("twice")));
    }
}

//! One compiled rule: its pattern, what its substitution produces, its flags and conditions.
//! Every check that can be made before a request arrives is made here, so a rule that compiles
//! can always be applied.

use std::collections::BTreeMap;
use std::rc::Rc;

use regex_lite::{Regex, RegexBuilder};

use crate::condition::{Condition, one_line};
use crate::flags::{Action, RuleFlags};
use crate::literal::LiteralPattern;
use crate::template::Template;

/// What the substitution turns the request into.
#[derive(Debug, Clone)]
pub enum Target {
    /// `-`: the path stays as it is.
    Keep,
    /// A path on this gateway, `/…` (optionally with `?query`).
    Local(Template),
    /// An absolute `http(s)://…` URL; only for redirects.
    Absolute(Template),
    /// `[P]`: a URL whose (literal) authority is mapped to an Envoy cluster.
    Proxy {
        authority: Rc<str>,
        cluster: Rc<str>,
        /// The path and query, starting with `/`.
        rest: Template,
    },
}

#[derive(Debug, Clone)]
pub struct Rule {
    /// Position in the configuration's `rules` array, for logs and errors.
    pub index: usize,
    /// The rule as written (or rebuilt from its structured form), for logs.
    pub text: String,
    /// Label in the hit metric: the rule's `name`, or its index.
    pub label: String,
    pattern: Regex,
    /// The pattern's literal form, when it has one and the rule is case-sensitive: matched
    /// without the regex engine (`literal`).
    literal: Option<LiteralPattern>,
    negated: bool,
    pub flags: RuleFlags,
    pub target: Target,
    pub conditions: Vec<Condition>,
}

/// A rule as written: pattern, substitution and flag words.
pub struct Parts<'a> {
    pub pattern: &'a str,
    pub substitution: &'a str,
    pub flags: &'a [String],
}

/// The `upstreams` map: target authority (lower-case) → Envoy cluster.
pub type Upstreams = BTreeMap<String, String>;

impl Rule {
    pub fn compile(
        index: usize,
        text: String,
        label: String,
        parts: &Parts<'_>,
        mut conditions: Vec<Condition>,
        upstreams: &Upstreams,
    ) -> Result<Self, String> {
        let flags = RuleFlags::parse(parts.flags)?;
        let (negated, source) = match parts.pattern.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, parts.pattern),
        };
        let pattern = RegexBuilder::new(source)
            .case_insensitive(flags.nocase)
            .build()
            .map_err(|e| format!("invalid regex `{source}`: {}", one_line(&e.to_string())))?;
        let literal = (!flags.nocase)
            .then(|| LiteralPattern::parse(source))
            .flatten();
        let groups_source = (!negated).then_some(&pattern);
        for (i, condition) in conditions.iter_mut().enumerate() {
            condition
                .resolve(groups_source)
                .map_err(|e| format!("condition {i}: {e}"))?;
        }
        let cond_groups = conditions.iter().filter_map(Condition::groups).max();
        let target = target(parts.substitution, flags.action, upstreams)?;
        let mut target = target;
        match &mut target {
            Target::Keep => {}
            Target::Local(t) | Target::Absolute(t) | Target::Proxy { rest: t, .. } => {
                t.resolve(groups_source, cond_groups)?;
            }
        }
        Ok(Self {
            index,
            text,
            label,
            pattern,
            literal,
            negated,
            flags,
            target,
            conditions,
        })
    }

    /// The pattern's literal form, if it has one and is not negated.
    pub fn literal(&self) -> Option<&LiteralPattern> {
        self.literal.as_ref().filter(|_| !self.negated)
    }

    /// Matches the pattern against `subject`; on a match returns the groups (`$0` is the whole
    /// match), empty for a negated pattern.
    pub fn matches(&self, subject: &str) -> Option<Vec<String>> {
        if let Some(literal) = &self.literal {
            if self.negated {
                return (!literal.is_match(subject)).then(Vec::new);
            }
            return literal
                .groups(subject)
                .map(|groups| groups.into_iter().map(String::from).collect());
        }
        if self.negated {
            return (!self.pattern.is_match(subject)).then(Vec::new);
        }
        self.pattern.captures(subject).map(|caps| {
            caps.iter()
                .map(|m| m.map_or_else(String::new, |m| m.as_str().to_string()))
                .collect()
        })
    }
}

fn target(substitution: &str, action: Action, upstreams: &Upstreams) -> Result<Target, String> {
    let answers = matches!(action, Action::Forbidden | Action::Gone);
    if substitution == "-" {
        return match action {
            Action::Proxy => {
                Err("`[P]` needs a target URL such as `http://host:port/path`, not `-`".into())
            }
            Action::Redirect(_) => {
                Err("`[R]` needs a target (`/path` or an absolute URL), not `-`".into())
            }
            _ => Ok(Target::Keep),
        };
    }
    if answers {
        return Err(
            "flags `F` and `G` answer without going anywhere; write `-` as the substitution".into(),
        );
    }
    let lower = substitution.to_ascii_lowercase();
    let scheme_len = ["http://", "https://"]
        .iter()
        .find(|s| lower.starts_with(*s))
        .map(|s| s.len());
    if let Some(scheme_len) = scheme_len {
        return match action {
            Action::Proxy => proxy_target(substitution, scheme_len, upstreams),
            Action::Redirect(_) => Ok(Target::Absolute(Template::parse(substitution)?)),
            _ => Err(format!(
                "the absolute URL `{substitution}` needs flag `P` (proxy to it) or `R` (redirect to it)"
            )),
        };
    }
    let template = Template::parse(substitution)?;
    if !(template.literal_prefix().starts_with('/') || template.starts_with_request_uri()) {
        return Err(format!(
            "the substitution `{substitution}` must be `-`, a path starting with `/`, or an absolute \
             http:// or https:// URL"
        ));
    }
    match action {
        Action::Proxy => Err(format!(
            "`[P]` needs an absolute URL (`http://host:port{substitution}`) whose authority is in `upstreams`"
        )),
        _ => Ok(Target::Local(template)),
    }
}

fn proxy_target(
    substitution: &str,
    scheme_len: usize,
    upstreams: &Upstreams,
) -> Result<Target, String> {
    let after_scheme = substitution.get(scheme_len..).unwrap_or("");
    let end = after_scheme.find(['/', '?']).unwrap_or(after_scheme.len());
    let authority = after_scheme.get(..end).unwrap_or("");
    let rest = after_scheme.get(end..).unwrap_or("");
    if authority.is_empty() {
        return Err(format!(
            "the target URL `{substitution}` has no authority (host:port)"
        ));
    }
    if authority.contains(['$', '%', '\\', '@']) {
        return Err(format!(
            "the authority `{authority}` of a `[P]` target must be written out (no `$`, `%`, `\\` or \
             user info) so that it can be mapped to an upstream"
        ));
    }
    let key = authority.to_ascii_lowercase();
    let cluster = upstreams.get(&key).ok_or_else(|| {
        let known: Vec<&str> = upstreams.keys().map(String::as_str).collect();
        format!(
            "the `[P]` target authority `{authority}` is not mapped to a cluster in `upstreams` (mapped: {})",
            if known.is_empty() { "none".to_string() } else { known.join(", ") }
        )
    })?;
    let rest = if rest.starts_with('/') {
        rest.to_string()
    } else {
        format!("/{rest}")
    };
    Ok(Target::Proxy {
        authority: key.into(),
        cluster: cluster.as_str().into(),
        rest: Template::parse(&rest)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstreams() -> Upstreams {
        BTreeMap::from([("localhost:3002".to_string(), "notes_api".to_string())])
    }

    fn compile(pattern: &str, substitution: &str, flags: &[&str]) -> Result<Rule, String> {
        let flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
        let parts = Parts {
            pattern,
            substitution,
            flags: &flags,
        };
        Rule::compile(
            0,
            String::new(),
            "0".into(),
            &parts,
            Vec::new(),
            &upstreams(),
        )
    }

    #[test]
    fn seed_rule_proxies_to_the_mapped_cluster() {
        let rule = compile("^/api/(.*)$", "http://localhost:3002/api/$1", &["P"]).unwrap();
        match &rule.target {
            Target::Proxy {
                authority, cluster, ..
            } => {
                assert_eq!(&**authority, "localhost:3002");
                assert_eq!(&**cluster, "notes_api");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(rule.matches("/api/notes").unwrap(), ["/api/notes", "notes"]);
        assert!(rule.matches("/apix").is_none());
    }

    #[test]
    fn authority_is_matched_case_insensitively_and_rest_gets_a_slash() {
        let rule = compile("^/x$", "http://LocalHost:3002?a=1", &["P"]).unwrap();
        assert!(
            matches!(rule.target, Target::Proxy { ref authority, .. } if &**authority == "localhost:3002")
        );
    }

    #[test]
    fn unmapped_or_dynamic_proxy_authority_is_refused() {
        let err = compile("^/(.*)$", "http://other:80/$1", &["P"]).unwrap_err();
        assert!(
            err.contains("`other:80` is not mapped") && err.contains("localhost:3002"),
            "{err}"
        );
        assert!(
            compile("^/(.*)$", "http://$1/x", &["P"]).is_err_and(|e| e.contains("written out"))
        );
        assert!(compile("^/(.*)$", "http:///x", &["P"]).is_err_and(|e| e.contains("no authority")));
    }

    #[test]
    fn proxy_needs_an_absolute_url() {
        assert!(compile("^/a$", "/b", &["P"]).is_err_and(|e| e.contains("absolute URL")));
        assert!(compile("^/a$", "-", &["P"]).is_err());
    }

    #[test]
    fn redirect_targets_must_be_absolute_or_start_with_a_slash() {
        assert!(compile("^/a$", "/b", &["R=301"]).is_ok());
        assert!(compile("^/a(.*)$", "https://%{HTTP_HOST}/b$1", &["R"]).is_ok());
        let err = compile("^/a$", "b/c", &["R"]).unwrap_err();
        assert!(
            err.contains("must be `-`, a path starting with `/`"),
            "{err}"
        );
        assert!(compile("^/a$", "ftp://x/b", &["R"]).is_err());
        assert!(compile("^/a$", "-", &["R"]).is_err());
    }

    #[test]
    fn absolute_url_without_p_or_r_is_refused() {
        let err = compile("^/a$", "http://localhost:3002/b", &[]).unwrap_err();
        assert!(err.contains("needs flag `P`"), "{err}");
    }

    #[test]
    fn forbidden_and_gone_take_no_target() {
        assert!(compile("^/a$", "-", &["F"]).is_ok());
        assert!(compile("^/a$", "-", &["G"]).is_ok());
        assert!(compile("^/a$", "/b", &["F"]).is_err_and(|e| e.contains("write `-`")));
    }

    #[test]
    fn bad_regex_and_bad_references_are_refused() {
        let err = compile("^/(a", "/b", &[]).unwrap_err();
        assert!(err.starts_with("invalid regex `^/(a`"), "{err}");
        assert!(!err.contains('\n'));
        let err = compile("^/(a)/(b)$", "/$5", &[]).unwrap_err();
        assert_eq!(err, "`$5` refers to group 5 but the pattern has 2 group(s)");
    }

    #[test]
    fn nocase_and_negation() {
        let rule = compile("^/API/", "-", &["NC"]).unwrap();
        assert!(rule.matches("/api/x").is_some());
        let rule = compile("!^/api/", "/other", &[]).unwrap();
        assert_eq!(rule.matches("/web"), Some(Vec::new()));
        assert!(rule.matches("/api/x").is_none());
        assert!(compile("!^/(api)/", "/$1", &[]).is_err_and(|e| e.contains("negated")));
    }
}

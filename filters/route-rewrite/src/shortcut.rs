//! The commonest rule set applied without the general engine: a first rule that sends a literal
//! prefix to an upstream, `^/api/(.*)$ http://localhost:3002/api/$1 [P]`, with no conditions.
//!
//! Why: for such a rule the engine's general state (the path and query as they are rewritten, the
//! groups as owned strings, the list of conditions' groups, the loop over the rules) is most of
//! the filter's own work on each request, in instructions and in the code a request runs through
//! (bench/NOTEBOOK.md, "Shortcuts for the usual configuration"). Here a request that matches the
//! first rule costs a prefix comparison, one expansion, the query's merge and the escaping. A
//! request that does not match goes through the engine as before, which then finds that the first
//! rule does not apply.
//!
//! The results are the engine's to the byte; the tests compare both on many rules and paths.

use std::rc::Rc;

use crate::flags::Action;
use crate::literal::{Captures, LiteralPattern};
use crate::rule::{Rule, Target};
use crate::template::{Template, Values};
use crate::url::{escape, join, merge_query, split_query};
use crate::variables::Variable;

/// What the first rule needs to be applied here, copied from it when the rules are compiled.
#[derive(Debug)]
pub struct Shortcut {
    pattern: LiteralPattern,
    rest: Template,
    authority: Rc<str>,
    cluster: Rc<str>,
    qsappend: bool,
    qsdiscard: bool,
}

/// What the shortcut made of a request whose path matched.
pub struct Proxied {
    /// The new path with its query, escaped, not yet checked against `max_path_length`.
    pub path: String,
    pub authority: Rc<str>,
    pub upstream: Rc<str>,
}

impl Shortcut {
    /// The shortcut for `rule`, if the rule is one it can apply as the engine would: a `[P]` rule
    /// without conditions whose pattern is a literal prefix matched against the path alone, and
    /// whose target refers to nothing but the pattern's groups.
    pub fn of(rule: &Rule) -> Option<Self> {
        let Target::Proxy {
            authority,
            cluster,
            rest,
        } = &rule.target
        else {
            return None;
        };
        let flags = &rule.flags;
        let applies_alone = flags.action == Action::Proxy
            && !flags.match_query
            && rule.conditions.is_empty()
            && rest.refers_only_to_rule_groups();
        if !applies_alone {
            return None;
        }
        Some(Self {
            pattern: rule.literal()?.clone(),
            rest: rest.clone(),
            authority: authority.clone(),
            cluster: cluster.clone(),
            qsappend: flags.qsappend,
            qsdiscard: flags.qsdiscard,
        })
    }

    /// Applies the rule to the request target `original` (`:path`, with its query); `None` when
    /// the path does not match.
    pub fn apply(&self, original: &str) -> Option<Proxied> {
        let (path, query) = split_query(original);
        let captures = self.pattern.captures(path)?;
        let expanded = self.rest.expand(&captures);
        let (new_path, new_query) = split_query(&expanded);
        let query = merge_query(new_query, query, self.qsappend, self.qsdiscard);
        Some(Proxied {
            path: escape(&join(new_path, query.as_deref()), false),
            authority: self.authority.clone(),
            upstream: self.cluster.clone(),
        })
    }
}

/// The shortcut's templates refer to the pattern's groups only (`Shortcut::of`), so the
/// condition groups and variables they could ask for are empty.
impl Values for Captures<'_> {
    fn rule_group(&self, index: usize) -> &str {
        self.group(index)
    }

    fn cond_group(&self, _index: usize) -> &str {
        ""
    }

    fn variable(&self, _variable: &Variable) -> std::borrow::Cow<'_, str> {
        std::borrow::Cow::Borrowed("")
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use proptest::prelude::*;
    use proptest::sample::select;
    use serde_json::json;

    use super::*;
    use crate::engine::{RequestHeaders, RuleSet};

    struct Path<'a>(&'a str);

    impl RequestHeaders for Path<'_> {
        fn get(&self, name: &str) -> Option<Cow<'_, str>> {
            match name {
                ":path" => Some(Cow::Borrowed(self.0)),
                ":authority" => Some(Cow::Borrowed("gw.example.com")),
                ":method" => Some(Cow::Borrowed("GET")),
                _ => None,
            }
        }
    }

    fn rule_set(rules: &[&str], max_path_length: usize) -> RuleSet {
        try_rule_set(rules, max_path_length).unwrap()
    }

    fn try_rule_set(
        rules: &[&str],
        max_path_length: usize,
    ) -> Result<RuleSet, wasmgate_filter_common::ConfigError> {
        let rules: Vec<_> = rules.iter().map(|r| json!({ "rule": r })).collect();
        let config = json!({
            "rules": rules,
            "upstreams": {"localhost:3002": "notes_api"},
            "max_path_length": max_path_length,
        });
        crate::config::load(config.to_string().as_bytes())
    }

    fn has_shortcut(rule: &str) -> bool {
        let set = rule_set(&[rule], 4096);
        set.rules().first().and_then(Shortcut::of).is_some()
    }

    #[test]
    fn the_usual_proxy_rule_takes_the_shortcut() {
        assert!(has_shortcut("^/api/(.*)$ http://localhost:3002/api/$1 [P]"));
        assert!(has_shortcut(
            "^/api/ http://localhost:3002/v2/$0?x=1 [P,QSA]"
        ));
    }

    #[test]
    fn rules_the_shortcut_cannot_apply_as_the_engine_would_go_through_the_engine() {
        for rule in [
            "^/api/(.*)$ /v2/$1",
            "^/api/(.*)$ http://localhost:3002/api/$1 [P,NC]",
            "!^/api/(.*)$ http://localhost:3002/ [P]",
            "^/api/(.*)$ http://localhost:3002/api/$1 [P,MQ]",
            "^/a.i/(.*)$ http://localhost:3002/api/$1 [P]",
            "^/api/(.*)$ http://localhost:3002/%{HTTP_HOST}/$1 [P]",
            "^/api/(.*)$ - [F]",
        ] {
            assert!(!has_shortcut(rule), "{rule}");
        }
        let with_condition = json!({
            "rules": [{
                "rule": "^/api/(.*)$ http://localhost:3002/api/$1 [P]",
                "conditions": ["%{REQUEST_METHOD} ^GET$"],
            }],
            "upstreams": {"localhost:3002": "notes_api"},
        });
        let set = crate::config::load(with_condition.to_string().as_bytes()).unwrap();
        assert!(set.rules().first().and_then(Shortcut::of).is_none());
    }

    fn first_rule() -> impl Strategy<Value = String> {
        let pattern = select(vec![
            "^/api/(.*)$",
            "^/api/(.*)",
            "^/api$",
            "^/api",
            "^/api/x",
            "^/a\\.b/(.*)$",
            "^/(.*)$",
        ]);
        let target = select(vec![
            "http://localhost:3002/api/$1",
            "http://localhost:3002/v2/$1?x=1",
            "http://localhost:3002/$0",
            "http://localhost:3002/api/$1?",
            "http://localhost:3002/a^b/$1#f",
            "http://localhost:3002/",
        ]);
        let flags = select(vec!["[P]", "[P,QSA]", "[P,QSD]", "[P,L]"]);
        (pattern, target, flags).prop_map(|(p, t, f)| format!("{p} {t} {f}"))
    }

    fn path() -> impl Strategy<Value = String> {
        let piece = select(vec![
            "/", "api", "/api/", "a.b", "x", "?a=1", "&b=%20", "?", "#f", " ", "é", "\n", "%2F",
        ]);
        proptest::collection::vec(piece, 0..7).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn the_shortcut_gives_the_engines_evaluation_to_the_byte(
            first in first_rule(),
            then_another in any::<bool>(),
            max_path_length in select(vec![8usize, 4096]),
            path in path(),
        ) {
            let mut rules = vec![first.as_str()];
            if then_another {
                rules.push("^/(.*)$ /other/$1");
            }
            // A target may name a group its pattern does not have (`^/api$` with `$1`).
            let with = try_rule_set(&rules, max_path_length);
            prop_assume!(with.is_ok());
            let with = with.unwrap();
            prop_assert!(with.rules().first().and_then(Shortcut::of).is_some());
            let without = rule_set(&rules, max_path_length).without_shortcut();
            let request = Path(&path);
            prop_assert_eq!(with.evaluate(&request), without.evaluate(&request));
        }
    }
}

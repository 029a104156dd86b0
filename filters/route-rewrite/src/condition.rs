//! Conditions (`RewriteCond`): a rule applies only when its conditions hold.
//! `TESTSTRING CONDPATTERN [NC,OR]`: the test string is expanded (variables, `$N` of the rule's
//! pattern), then compared with the pattern: a regex, or `=text` for plain equality; a leading
//! `!` negates either.

use regex_lite::{Regex, RegexBuilder};

use crate::flags::CondFlags;
use crate::template::{Template, Values};

#[derive(Debug, Clone)]
enum Test {
    Regex(Regex),
    Equals(String),
}

#[derive(Debug, Clone)]
pub struct Condition {
    test_string: Template,
    test: Test,
    negate: bool,
    nocase: bool,
    pub or_next: bool,
}

impl Condition {
    /// Builds a condition from its test string, its pattern (with `!`/`=` as written) and flags.
    pub fn new(test_string: &str, pattern: &str, flags: CondFlags) -> Result<Self, String> {
        let template = Template::parse(test_string).map_err(|e| format!("test string: {e}"))?;
        template.without_condition_groups()?;
        let (negate, pattern) = match pattern.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, pattern),
        };
        let test = match pattern.strip_prefix('=') {
            Some(text) if flags.nocase => Test::Equals(text.to_lowercase()),
            Some(text) => Test::Equals(text.to_string()),
            None => Test::Regex(
                RegexBuilder::new(pattern)
                    .case_insensitive(flags.nocase)
                    .build()
                    .map_err(|e| {
                        format!("invalid regex `{pattern}`: {}", one_line(&e.to_string()))
                    })?,
            ),
        };
        Ok(Self {
            test_string: template,
            test,
            negate,
            nocase: flags.nocase,
            or_next: flags.or_next,
        })
    }

    /// Lets `$N` in the test string refer to the rule's pattern (checked here, at start-up).
    pub fn resolve(&mut self, pattern: Option<&Regex>) -> Result<(), String> {
        self.test_string.resolve(pattern, None)
    }

    /// How many groups `%N` may refer to after this condition matched (`None`: it captures nothing).
    pub fn groups(&self) -> Option<usize> {
        match (&self.test, self.negate) {
            (Test::Regex(regex), false) => Some(regex.captures_len().saturating_sub(1)),
            _ => None,
        }
    }

    /// `None` when the condition does not hold; otherwise the groups it captured
    /// (`%0` is the whole match), empty for conditions that capture nothing.
    pub fn evaluate(&self, values: &dyn Values) -> Option<Vec<String>> {
        let subject = self.test_string.expand(values);
        let (holds, groups) = match &self.test {
            Test::Regex(regex) => match regex.captures(&subject) {
                Some(caps) => (
                    true,
                    caps.iter()
                        .map(|m| m.map_or_else(String::new, |m| m.as_str().to_string()))
                        .collect(),
                ),
                None => (false, Vec::new()),
            },
            Test::Equals(text) if self.nocase => (subject.to_lowercase() == *text, Vec::new()),
            Test::Equals(text) => (subject == *text, Vec::new()),
        };
        match (holds, self.negate) {
            (true, false) => Some(groups),
            (false, true) => Some(Vec::new()),
            _ => None,
        }
    }
}

/// The regex crate's errors span several lines with a caret diagram; a log line needs one.
pub fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.chars().all(|c| c == '^' || c == ' '))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Evaluates a rule's conditions in order: `A [OR] B` holds when A or B holds, and consecutive
/// conditions otherwise must all hold. Returns the groups of the last condition that matched,
/// or `None` when the conditions do not hold.
pub fn evaluate_all(conditions: &[Condition], values: &dyn Values) -> Option<Vec<String>> {
    let mut last_groups = Vec::new();
    // Whether the current OR-group already holds; a holding group skips its remaining members.
    let mut group_holds = false;
    for condition in conditions {
        if !group_holds && let Some(groups) = condition.evaluate(values) {
            group_holds = true;
            last_groups = groups;
        }
        if !condition.or_next {
            if !group_holds {
                return None;
            }
            group_holds = false;
        }
    }
    // A trailing `[OR]` on the last condition has no partner; the group it opened must hold.
    if conditions.last().is_some_and(|c| c.or_next) && !group_holds {
        return None;
    }
    Some(last_groups)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::variables::Variable;
    use std::borrow::Cow;

    struct Req(&'static str, &'static str);
    impl Values for Req {
        fn rule_group(&self, index: usize) -> &str {
            if index == 1 { "notes" } else { "" }
        }
        fn cond_group(&self, _: usize) -> &str {
            ""
        }
        fn variable(&self, variable: &Variable) -> Cow<'_, str> {
            match variable {
                Variable::Method => self.0.into(),
                Variable::Header(name) if name == "x-tenant" => self.1.into(),
                _ => Cow::Borrowed(""),
            }
        }
    }

    fn cond(test: &str, pattern: &str, flags: &[&str]) -> Condition {
        Condition::new(test, pattern, CondFlags::parse(flags).unwrap()).unwrap()
    }

    #[test]
    fn regex_condition_captures_groups() {
        let c = cond("%{HTTP:X-Tenant}", "^(b)eta$", &[]);
        assert_eq!(
            c.evaluate(&Req("GET", "beta")),
            Some(vec!["beta".into(), "b".into()])
        );
        assert_eq!(c.evaluate(&Req("GET", "gamma")), None);
        assert_eq!(c.groups(), Some(1));
    }

    #[test]
    fn negation_and_equality() {
        let not_post = cond("%{REQUEST_METHOD}", "!^POST$", &[]);
        assert!(not_post.evaluate(&Req("GET", "")).is_some());
        assert!(not_post.evaluate(&Req("POST", "")).is_none());
        assert_eq!(not_post.groups(), None);
        let eq = cond("%{REQUEST_METHOD}", "=GET", &[]);
        assert!(eq.evaluate(&Req("GET", "")).is_some());
        assert!(eq.evaluate(&Req("get", "")).is_none());
        assert!(eq.evaluate(&Req("GETX", "")).is_none());
        let ne = cond("%{REQUEST_METHOD}", "!=GET", &[]);
        assert!(ne.evaluate(&Req("PUT", "")).is_some());
        assert!(ne.evaluate(&Req("GET", "")).is_none());
    }

    #[test]
    fn nocase_applies_to_regex_and_equality() {
        assert!(
            cond("%{HTTP:x-tenant}", "^BETA$", &["NC"])
                .evaluate(&Req("GET", "beta"))
                .is_some()
        );
        assert!(
            cond("%{HTTP:x-tenant}", "^BETA$", &[])
                .evaluate(&Req("GET", "beta"))
                .is_none()
        );
        assert!(
            cond("%{HTTP:x-tenant}", "=BeTa", &["NC"])
                .evaluate(&Req("GET", "bEtA"))
                .is_some()
        );
    }

    #[test]
    fn test_string_can_use_rule_groups() {
        let mut c = cond("$1", "^notes$", &[]);
        let regex = Regex::new("^/api/(.*)$").unwrap();
        c.resolve(Some(&regex)).unwrap();
        assert!(c.evaluate(&Req("GET", "")).is_some());
        let mut bad = cond("$2", "^x$", &[]);
        assert!(bad.resolve(Some(&regex)).is_err());
    }

    #[test]
    fn and_or_grouping() {
        let get = || cond("%{REQUEST_METHOD}", "=GET", &["OR"]);
        let head = || cond("%{REQUEST_METHOD}", "=HEAD", &[]);
        let beta = || cond("%{HTTP:x-tenant}", "=beta", &[]);
        // (GET or HEAD) and beta
        let all = [get(), head(), beta()];
        assert!(evaluate_all(&all, &Req("GET", "beta")).is_some());
        assert!(evaluate_all(&all, &Req("HEAD", "beta")).is_some());
        assert!(evaluate_all(&all, &Req("POST", "beta")).is_none());
        assert!(evaluate_all(&all, &Req("GET", "alpha")).is_none());
        assert!(evaluate_all(&[], &Req("GET", "")).is_some());
        let dangling = [cond("%{REQUEST_METHOD}", "=GET", &["OR"])];
        assert!(evaluate_all(&dangling, &Req("GET", "")).is_some());
        assert!(evaluate_all(&dangling, &Req("PUT", "")).is_none());
    }

    #[test]
    fn groups_come_from_the_last_matching_condition() {
        let conds = [
            cond("%{REQUEST_METHOD}", "^(G)ET$", &[]),
            cond("%{HTTP:x-tenant}", "^(b)(e)ta$", &[]),
            cond("%{HTTP:x-tenant}", "!^x", &[]),
        ];
        let groups = evaluate_all(&conds, &Req("GET", "beta")).unwrap();
        // The negated third condition holds but captures nothing.
        assert!(groups.is_empty());
        let groups = evaluate_all(&conds[..2], &Req("GET", "beta")).unwrap();
        assert_eq!(groups, ["beta", "b", "e"]);
    }

    #[test]
    fn bad_conditions_are_refused() {
        let flags = CondFlags::default();
        assert!(
            Condition::new("%{HTTP_HOST}", "(", flags)
                .is_err_and(|e| e.starts_with("invalid regex `(`"))
        );
        assert!(
            Condition::new("%{NOPE}", "x", flags).is_err_and(|e| e.contains("unknown variable"))
        );
        assert!(Condition::new("%1", "x", flags).is_err());
    }

    #[test]
    fn regex_errors_fit_on_one_line() {
        let err = Condition::new("x", "a(b", CondFlags::default()).unwrap_err();
        assert!(!err.contains('\n'), "{err}");
    }
}

//! Applying the compiled rules to one request. Pure: the request comes in through
//! `RequestHeaders`, and what to do with it goes out as an `Evaluation` the adapter carries out.

use crate::condition::evaluate_all;
use crate::flags::Action;
use crate::reply::Reply;
use crate::rule::{Rule, Target};
use crate::shortcut::{Proxied, Shortcut};
use crate::template::Values;
use crate::url::{escape, join, merge_query, split_query};
use crate::variables::Variable;

/// Read access to the request headers, pseudo-headers (`:path`, `:method`, `:authority`,
/// `:scheme`) included; names are lower-case.
pub trait RequestHeaders {
    fn get(&self, name: &str) -> Option<Cow<'_, str>>;
}

/// The compiled configuration.
use std::borrow::Cow;
use std::rc::Rc;

#[derive(Debug)]
pub struct RuleSet {
    rules: Vec<Rule>,
    max_rule_applications: u32,
    max_path_length: usize,
    /// The first rule, when it can be applied without the general engine (`shortcut.rs`).
    shortcut: Option<Shortcut>,
    forwarding: Forwarding,
}

/// What a rewritten or proxied request carries besides its path and cluster: the configuration's
/// `preserve_host` and `send_original_path`. The rules decide the same either way; the adapter
/// leaves out the writes these turn off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forwarding {
    /// `[P]` leaves `:authority` as the client sent it.
    pub preserve_host: bool,
    /// The client's `:path` goes on in `x-wasmgate-original-path`.
    pub send_original_path: bool,
}

impl Default for Forwarding {
    /// As mod_proxy forwards by default: the target's Host; and the original path recorded.
    fn default() -> Self {
        Self {
            preserve_host: false,
            send_original_path: true,
        }
    }
}

/// Changes to make to the request before it goes on; `None` leaves a header as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rewrite {
    /// The new `:path` (with its query).
    pub path: Option<String>,
    /// The new `:authority` (`[P]` only). Shared with the rule: a clone is a count, not a copy.
    pub authority: Option<Rc<str>>,
    /// The cluster to route to (`[P]` only), shared likewise.
    pub upstream: Option<Rc<str>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Continue(Rewrite),
    Respond(Reply),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Evaluation {
    pub outcome: Outcome,
    /// Positions (in `RuleSet::rules`) of the rules that applied, in order, for the hit metrics.
    pub hits: Vec<usize>,
    /// A line for the operator when something went wrong (loop, path too long).
    pub error: Option<String>,
}

impl RuleSet {
    pub fn new(rules: Vec<Rule>, max_rule_applications: u32, max_path_length: usize) -> Self {
        // With no application allowed at all, even the first rule's is an error: the engine's.
        let shortcut = rules
            .first()
            .filter(|_| max_rule_applications > 0)
            .and_then(Shortcut::of);
        Self {
            rules,
            max_rule_applications,
            max_path_length,
            shortcut,
            forwarding: Forwarding::default(),
        }
    }

    /// The same rules, forwarding requests as `forwarding` says.
    pub fn forwarding_as(mut self, forwarding: Forwarding) -> Self {
        self.forwarding = forwarding;
        self
    }

    /// What a rewritten or proxied request carries besides its path and cluster.
    pub fn forwarding(&self) -> Forwarding {
        self.forwarding
    }

    /// The same rules without the shortcut, for comparing it with the engine.
    #[cfg(test)]
    pub(crate) fn without_shortcut(mut self) -> Self {
        self.shortcut = None;
        self
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn evaluate(&self, request: &dyn RequestHeaders) -> Evaluation {
        // Without `:path` (a CONNECT request) there is nothing to rewrite.
        let Some(original) = request.get(":path") else {
            return Evaluation {
                outcome: Outcome::Continue(Rewrite::default()),
                hits: Vec::new(),
                error: None,
            };
        };
        if let Some(proxied) = self.shortcut.as_ref().and_then(|s| s.apply(&original)) {
            return self.proxied_by_first_rule(proxied);
        }
        let (original_path, original_query) = split_query(&original);
        let mut state = State {
            path: original_path.to_string(),
            query: original_query.map(str::to_string),
        };
        let mut hits = Vec::new();
        let mut applications: u32 = 0;
        let mut position = 0;
        while let Some(rule) = self.rules.get(position) {
            let subject = if rule.flags.match_query {
                join(&state.path, state.query.as_deref())
            } else {
                state.path.clone()
            };
            // A copy, so that the scope can read the query while `apply` changes the state.
            let query_now = state.query.clone();
            let scope_base = Scope {
                request,
                original_path,
                query: query_now.as_deref(),
                rule_groups: &[],
                cond_groups: &[],
            };
            let Some(rule_groups) = rule.matches(&subject) else {
                position = self.after_failure(position);
                continue;
            };
            let scope = Scope {
                rule_groups: &rule_groups,
                ..scope_base
            };
            let Some(cond_groups) = evaluate_all(&rule.conditions, &scope) else {
                position = self.after_failure(position);
                continue;
            };
            applications = applications.saturating_add(1);
            if applications > self.max_rule_applications {
                return failure(
                    hits,
                    format!(
                        "rule rules[{}] `{}` would apply more than {} times in one request \
                         (max_rule_applications; a rewrite loop?), answering 500",
                        rule.index, rule.text, self.max_rule_applications
                    ),
                );
            }
            hits.push(position);
            let scope = Scope {
                cond_groups: &cond_groups,
                ..scope
            };
            match self.apply(rule, &scope, &mut state) {
                Applied::Respond(reply) => return respond(hits, reply),
                Applied::Proxy(rewrite) => {
                    if let Some(error) = self.too_long(rule, rewrite.path.as_deref().unwrap_or(""))
                    {
                        return failure(hits, error);
                    }
                    return Evaluation {
                        outcome: Outcome::Continue(rewrite),
                        hits,
                        error: None,
                    };
                }
                Applied::Rewritten => {}
            }
            if let Some(error) = self.too_long(rule, &join(&state.path, state.query.as_deref())) {
                return failure(hits, error);
            }
            if rule.flags.last {
                break;
            }
            position = if rule.flags.next {
                0
            } else {
                position.saturating_add(1).saturating_add(rule.flags.skip)
            };
        }
        let rewritten = join(&state.path, state.query.as_deref());
        Evaluation {
            outcome: Outcome::Continue(Rewrite {
                path: (rewritten != original).then_some(rewritten),
                authority: None,
                upstream: None,
            }),
            hits,
            error: None,
        }
    }

    /// The evaluation the engine makes when the first rule proxies the request.
    fn proxied_by_first_rule(&self, proxied: Proxied) -> Evaluation {
        let hits = vec![0];
        let error = self
            .rules
            .first()
            .and_then(|rule| self.too_long(rule, &proxied.path));
        if let Some(error) = error {
            return failure(hits, error);
        }
        Evaluation {
            outcome: Outcome::Continue(Rewrite {
                path: Some(proxied.path),
                authority: Some(proxied.authority),
                upstream: Some(proxied.upstream),
            }),
            hits,
            error: None,
        }
    }

    /// Where to go on when the rule at `position` does not apply: the next rule, past every rule
    /// chained to this one with `C`.
    fn after_failure(&self, position: usize) -> usize {
        let mut last = position;
        while self.rules.get(last).is_some_and(|r| r.flags.chain) {
            last = last.saturating_add(1);
        }
        last.saturating_add(1)
    }

    fn apply(&self, rule: &Rule, scope: &Scope<'_>, state: &mut State) -> Applied {
        let flags = &rule.flags;
        match (&rule.target, flags.action) {
            (_, Action::Forbidden) => Applied::Respond(Reply::forbidden()),
            (_, Action::Gone) => Applied::Respond(Reply::gone()),
            (Target::Keep, _) => {
                state.query = merge_query(None, state.query.as_deref(), false, flags.qsdiscard);
                Applied::Rewritten
            }
            (Target::Local(template) | Target::Absolute(template), Action::Redirect(status)) => {
                let expanded = template.expand(scope);
                let (before_fragment, fragment) = match expanded.split_once('#') {
                    Some((before, fragment)) => (before, Some(fragment)),
                    None => (expanded.as_str(), None),
                };
                let (path, query) = split_query(before_fragment);
                let query = merge_query(
                    query,
                    state.query.as_deref(),
                    flags.qsappend,
                    flags.qsdiscard,
                );
                let mut location = join(path, query.as_deref());
                if let Some(fragment) = fragment {
                    location.push('#');
                    location.push_str(fragment);
                }
                Applied::Respond(Reply::redirect(status, &escape(&location, true)))
            }
            (Target::Local(template), _) => {
                let expanded = template.expand(scope);
                let (path, query) = split_query(&expanded);
                state.query = merge_query(
                    query,
                    state.query.as_deref(),
                    flags.qsappend,
                    flags.qsdiscard,
                );
                state.path = escape(path, false);
                state.query = state.query.as_deref().map(|q| escape(q, false));
                Applied::Rewritten
            }
            (
                Target::Proxy {
                    authority,
                    cluster,
                    rest,
                },
                _,
            ) => {
                let expanded = rest.expand(scope);
                let (path, query) = split_query(&expanded);
                let query = merge_query(
                    query,
                    state.query.as_deref(),
                    flags.qsappend,
                    flags.qsdiscard,
                );
                Applied::Proxy(Rewrite {
                    path: Some(escape(&join(path, query.as_deref()), false)),
                    authority: Some(authority.clone()),
                    upstream: Some(cluster.clone()),
                })
            }
            // The compiler refuses an absolute URL without `P` or `R`; should one get here, the
            // request goes on unchanged rather than anywhere unexpected.
            (Target::Absolute(_), _) => Applied::Rewritten,
        }
    }

    fn too_long(&self, rule: &Rule, target: &str) -> Option<String> {
        (target.len() > self.max_path_length).then(|| {
            format!(
                "rule rules[{}] `{}` made a path of {} bytes, more than max_path_length {}, answering 500",
                rule.index,
                rule.text,
                target.len(),
                self.max_path_length
            )
        })
    }
}

/// The request as the rules have left it so far.
struct State {
    path: String,
    query: Option<String>,
}

enum Applied {
    Rewritten,
    Proxy(Rewrite),
    Respond(Reply),
}

fn respond(hits: Vec<usize>, reply: Reply) -> Evaluation {
    Evaluation {
        outcome: Outcome::Respond(reply),
        hits,
        error: None,
    }
}

fn failure(hits: Vec<usize>, error: String) -> Evaluation {
    Evaluation {
        outcome: Outcome::Respond(Reply::internal_error()),
        hits,
        error: Some(error),
    }
}

/// What templates can see while a rule is applied.
#[derive(Clone, Copy)]
struct Scope<'a> {
    request: &'a dyn RequestHeaders,
    original_path: &'a str,
    query: Option<&'a str>,
    rule_groups: &'a [String],
    cond_groups: &'a [String],
}

impl Values for Scope<'_> {
    fn rule_group(&self, index: usize) -> &str {
        self.rule_groups.get(index).map_or("", String::as_str)
    }

    fn cond_group(&self, index: usize) -> &str {
        self.cond_groups.get(index).map_or("", String::as_str)
    }

    fn variable(&self, variable: &Variable) -> Cow<'_, str> {
        match variable {
            Variable::Method => self.request.get(":method").unwrap_or_default(),
            Variable::Host => self.request.get(":authority").unwrap_or_default(),
            Variable::RequestUri => Cow::Borrowed(self.original_path),
            Variable::QueryString => Cow::Borrowed(self.query.unwrap_or("")),
            Variable::Scheme => self.request.get(":scheme").unwrap_or_default(),
            Variable::Https => {
                let https = self
                    .request
                    .get(":scheme")
                    .is_some_and(|s| s.eq_ignore_ascii_case("https"));
                Cow::Borrowed(if https { "on" } else { "off" })
            }
            Variable::Header(name) => self.request.get(name).unwrap_or_default(),
        }
    }
}

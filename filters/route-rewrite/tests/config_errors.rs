//! Every kind of bad configuration is refused at start-up with the field (rule index), the
//! rule's text and the reason.

// Helpers of these tests fail loudly, like the tests themselves (clippy only exempts #[test] fns).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use route_rewrite::load;
use serde_json::json;

/// The `invalid configuration: field `…`: …` message for `config`.
fn error(config: serde_json::Value) -> String {
    match load(config.to_string().as_bytes()) {
        Ok(_) => panic!("configuration was accepted: {config}"),
        Err(e) => e.to_string(),
    }
}

fn rule_error(rule: &str) -> String {
    error(json!({
        "rules": ["^/ok$ /fine", rule],
        "upstreams": {"localhost:3002": "notes_api"}
    }))
}

#[track_caller]
fn assert_has(message: &str, parts: &[&str]) {
    for part in parts {
        assert!(message.contains(part), "`{part}` missing from: {message}");
    }
}

#[test]
fn invalid_regex() {
    let e = rule_error("^/(a /b");
    assert_has(
        &e,
        &[
            "invalid configuration: field `rules[1]`",
            "rule `^/(a /b`",
            "invalid regex `^/(a`",
        ],
    );
    assert!(!e.contains('\n'), "one line for the log: {e}");
}

#[test]
fn unknown_flag() {
    assert_has(
        &rule_error("^/a /b [L,X]"),
        &["field `rules[1]`", "unknown flag `X`"],
    );
    assert_has(&rule_error("^/a /b [PT]"), &["flag `PT` is not supported"]);
}

#[test]
fn group_reference_beyond_the_pattern() {
    assert_has(
        &rule_error("^/(a)/(b)$ /$5"),
        &[
            "rule `^/(a)/(b)$ /$5`",
            "`$5` refers to group 5 but the pattern has 2 group(s)",
        ],
    );
}

#[test]
fn redirect_target_neither_absolute_nor_rooted() {
    assert_has(
        &rule_error("^/a$ b/c [R=301]"),
        &["must be `-`, a path starting with `/`"],
    );
}

#[test]
fn unmapped_proxy_authority() {
    assert_has(
        &rule_error("^/x/(.*)$ http://localhost:9999/$1 [P]"),
        &[
            "field `rules[1]`",
            "`localhost:9999` is not mapped",
            "localhost:3002",
        ],
    );
}

#[test]
fn wrong_number_of_words() {
    assert_has(
        &rule_error("^/a$"),
        &["`PATTERN SUBSTITUTION [FLAGS]`", "1 word(s)"],
    );
    assert_has(&rule_error("^/a$ /b /c"), &["3 word(s)"]);
}

#[test]
fn conflicting_flags() {
    assert_has(
        &rule_error("^/a$ /b [R,F]"),
        &["flags `R` and `F` cannot be combined"],
    );
}

#[test]
fn bad_redirect_status() {
    assert_has(
        &rule_error("^/a$ /b [R=200]"),
        &["301, 302, 303, 307 or 308"],
    );
}

#[test]
fn absolute_url_without_proxy_or_redirect() {
    assert_has(
        &rule_error("^/a$ http://localhost:3002/b"),
        &["needs flag `P`"],
    );
}

#[test]
fn bad_condition_lines() {
    assert_has(
        &rule_error("RewriteCond %{HTTP:x} (unclosed"),
        &[
            "field `rules[1]`",
            "condition `RewriteCond %{HTTP:x} (unclosed`",
            "invalid regex",
        ],
    );
    assert_has(
        &rule_error("RewriteCond %{NOPE} x"),
        &["unknown variable `%{NOPE}`"],
    );
    assert_has(
        &rule_error("RewriteCond %{HTTP_HOST} x [L]"),
        &["unknown condition flag `L`"],
    );
    let dangling = error(json!({"rules": ["^/a$ /b", "RewriteCond %{HTTP_HOST} =x"]}));
    assert_has(
        &dangling,
        &["field `rules[1]`", "is not followed by a rule"],
    );
}

#[test]
fn condition_group_without_condition() {
    assert_has(
        &rule_error("^/a$ /b/%1"),
        &["`%1`", "no condition of this rule captures"],
    );
}

#[test]
fn structured_rule_errors_name_their_field() {
    let e = error(json!({"rules": [{"pattern": "^/a$", "substitution": "/b", "flags": ["Q"]}]}));
    assert_has(
        &e,
        &["field `rules[0]`", "rule `^/a$ /b [Q]`", "unknown flag `Q`"],
    );
    let e = error(json!({"rules": [{"pattern": "^/a$"}]}));
    assert_has(&e, &["field `rules[0]`", "missing `substitution`"]);
    let e = error(json!({"rules": [{"rule": "^/a$ /b", "pattern": "x"}]}));
    assert_has(&e, &["not both"]);
    let e = error(json!({"rules": [{"rule": "^/a$ /b", "name": "bad name"}]}));
    assert_has(&e, &["field `rules[0].name`"]);
    let e = error(json!({"rules": [{"rule": "^/(a$ /b"}]}));
    assert_has(&e, &["field `rules[0].rule`", "invalid regex"]);
    let e = error(json!({"rules": [{"rule": "^/a$ /b", "prio": 1}]}));
    assert_has(&e, &["field `rules[0].prio`", "unknown field `prio`"]);
}

#[test]
fn structured_condition_errors_name_their_field() {
    let e = error(
        json!({"rules": [{"rule": "^/a$ /b", "conditions": [{"on": "header:x", "matches": "("}]}]}),
    );
    assert_has(&e, &["field `rules[0].conditions[0]`", "invalid regex"]);
    let e = error(
        json!({"rules": [{"rule": "^/a$ /b", "conditions": [{"on": "cookie", "equals": "x"}]}]}),
    );
    assert_has(&e, &["`on`: unknown `cookie`"]);
    let e = error(json!({"rules": [{"rule": "^/a$ /b", "conditions": [{"on": "method"}]}]}));
    assert_has(&e, &["exactly one of `matches`"]);
    let e = error(
        json!({"rules": [{"rule": "^/a$ /b", "conditions": [{"on": "method", "equals": "GET", "oops": 1}]}]}),
    );
    assert_has(&e, &["rules[0].conditions[0]", "unknown field `oops`"]);
}

#[test]
fn duplicate_rule_names() {
    let e = error(json!({"rules": [
        {"rule": "^/a$ /b", "name": "api"},
        {"rule": "^/c$ /d", "name": "api"}
    ]}));
    assert_has(
        &e,
        &["field `rules[1].name`", "already the name of rules[0]"],
    );
}

#[test]
fn bad_upstreams_and_limits() {
    assert_has(
        &error(json!({"upstreams": {"http://x": "c"}})),
        &["field `upstreams.http://x`"],
    );
    assert_has(
        &error(json!({"upstreams": {"x:1": ""}})),
        &["not a usable cluster name"],
    );
    assert_has(
        &error(json!({"upstreams": {"X:1": "a", "x:1": "b"}})),
        &["given twice"],
    );
    assert_has(
        &error(json!({"max_rule_applications": 0})),
        &["field `max_rule_applications`"],
    );
    assert_has(
        &error(json!({"max_path_length": 0})),
        &["field `max_path_length`"],
    );
    assert_has(
        &error(json!({"rules": [3]})),
        &["field `rules[0]`", "a string or an object"],
    );
    assert_has(&error(json!({"rule": []})), &["unknown field `rule`"]);
    assert_has(
        &error(json!({"preserve_host": "yes"})),
        &["field `preserve_host`"],
    );
    assert_has(
        &error(json!({"send_original_path": 0})),
        &["field `send_original_path`"],
    );
}

#[test]
fn forwarding_options_default_to_mod_proxy_and_are_read() {
    let defaults = load(b"{}").unwrap().forwarding();
    assert!(!defaults.preserve_host);
    assert!(defaults.send_original_path);
    let set = load(br#"{"preserve_host": true, "send_original_path": false}"#)
        .unwrap()
        .forwarding();
    assert!(set.preserve_host);
    assert!(!set.send_original_path);
}

#[test]
fn malformed_json() {
    assert!(load(b"{\"rules\": [").is_err());
}

//! The rule language end to end on the host: JSON configuration in, evaluation of requests out.

// Helpers of these tests fail loudly, like the tests themselves (clippy only exempts #[test] fns).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::borrow::Cow;
use std::collections::BTreeMap;

use route_rewrite::{Evaluation, Outcome, RequestHeaders, Rewrite, RuleSet, load};
use serde_json::json;

struct Request(BTreeMap<String, String>);

impl RequestHeaders for Request {
    fn get(&self, name: &str) -> Option<Cow<'_, str>> {
        self.0.get(name).map(|v| Cow::Borrowed(v.as_str()))
    }
}

fn request(method: &str, path: &str, headers: &[(&str, &str)]) -> Request {
    let mut map = BTreeMap::from([
        (":method".to_string(), method.to_string()),
        (":path".to_string(), path.to_string()),
        (":authority".to_string(), "gw.example.com:8443".to_string()),
        (":scheme".to_string(), "https".to_string()),
    ]);
    for (name, value) in headers {
        map.insert(name.to_string(), value.to_string());
    }
    Request(map)
}

fn rules(config: serde_json::Value) -> RuleSet {
    load(config.to_string().as_bytes()).unwrap()
}

fn with_upstreams(rules_json: serde_json::Value) -> RuleSet {
    rules(json!({
        "rules": rules_json,
        "upstreams": {"localhost:3002": "notes_api", "localhost:3003": "notes_beta"}
    }))
}

fn get(set: &RuleSet, path: &str) -> Evaluation {
    set.evaluate(&request("GET", path, &[]))
}

fn rewrite(evaluation: &Evaluation) -> &Rewrite {
    match &evaluation.outcome {
        Outcome::Continue(rewrite) => rewrite,
        other => panic!("expected the request to go on, got {other:?}"),
    }
}

fn path(evaluation: &Evaluation) -> Option<&str> {
    rewrite(evaluation).path.as_deref()
}

fn answer(evaluation: &Evaluation) -> (u16, Option<&str>) {
    match &evaluation.outcome {
        Outcome::Respond(reply) => (
            reply.status,
            reply
                .headers
                .iter()
                .find(|(n, _)| n == "location")
                .map(|(_, v)| v.as_str()),
        ),
        other => panic!("expected an answer, got {other:?}"),
    }
}

#[test]
fn seed_rule_proxies_api_to_the_notes_cluster() {
    let set = with_upstreams(json!(["^/api/(.*)$ http://localhost:3002/api/$1 [P]"]));
    let e = get(&set, "/api/notes/7?fields=title");
    assert_eq!(
        rewrite(&e),
        &Rewrite {
            path: Some("/api/notes/7?fields=title".into()),
            authority: Some("localhost:3002".into()),
            upstream: Some("notes_api".into()),
        }
    );
    assert_eq!(e.hits, [0]);
    // Outside /api/ nothing changes and nothing is counted.
    let e = get(&set, "/callback");
    assert_eq!(rewrite(&e), &Rewrite::default());
    assert!(e.hits.is_empty());
}

#[test]
fn local_rewrite_changes_only_the_path() {
    let set = with_upstreams(json!(["^/v1/(.*)$ /api/$1"]));
    let e = get(&set, "/v1/notes?x=1");
    assert_eq!(
        rewrite(&e),
        &Rewrite {
            path: Some("/api/notes?x=1".into()),
            ..Rewrite::default()
        }
    );
}

#[test]
fn dash_leaves_the_path_unchanged() {
    let set = with_upstreams(json!(["^/api/ -", "^/api/(.*)$ /x/$1"]));
    let e = get(&set, "/api/notes");
    assert_eq!(path(&e), Some("/x/notes"));
    assert_eq!(e.hits, [0, 1]);
}

#[test]
fn rules_apply_in_order_each_to_the_previous_result() {
    let set = with_upstreams(json!(["^/a/(.*)$ /b/$1", "^/b/(.*)$ /c/$1"]));
    assert_eq!(path(&get(&set, "/a/x")), Some("/c/x"));
}

#[test]
fn last_stops_processing() {
    let set = with_upstreams(json!(["^/a/(.*)$ /b/$1 [L]", "^/b/(.*)$ /c/$1"]));
    assert_eq!(path(&get(&set, "/a/x")), Some("/b/x"));
    assert_eq!(path(&get(&set, "/b/x")), Some("/c/x"));
}

#[test]
fn redirect_answers_with_status_and_location() {
    let set = with_upstreams(json!([
        "^/old/(.*)$ /new/$1 [R=301]",
        "^/moved$ https://docs.example.com/here [R]",
        "^/same/(.*)$ https://%{HTTP_HOST}/x/$1 [R=308]",
        "^/anchor$ /page#top [R=302,NE]"
    ]));
    assert_eq!(
        answer(&get(&set, "/old/notes?a=1")),
        (301, Some("/new/notes?a=1"))
    );
    assert_eq!(
        answer(&get(&set, "/moved")),
        (302, Some("https://docs.example.com/here"))
    );
    assert_eq!(
        answer(&get(&set, "/same/y")),
        (308, Some("https://gw.example.com:8443/x/y"))
    );
    assert_eq!(
        answer(&get(&set, "/anchor?q=1")),
        (302, Some("/page?q=1#top"))
    );
}

#[test]
fn every_redirect_status_is_used() {
    for code in [301, 302, 303, 307, 308] {
        let set = with_upstreams(json!([format!("^/a$ /b [R={code}]")]));
        assert_eq!(answer(&get(&set, "/a")).0, code);
    }
}

#[test]
fn forbidden_and_gone() {
    let set = with_upstreams(json!(["^/admin - [F]", "^/legacy/ - [G]"]));
    let e = get(&set, "/admin/users");
    assert_eq!(answer(&e).0, 403);
    assert_eq!(e.hits, [0]);
    assert_eq!(answer(&get(&set, "/legacy/x")).0, 410);
    assert_eq!(rewrite(&get(&set, "/public")), &Rewrite::default());
}

#[test]
fn nocase_matches_any_case() {
    let set = with_upstreams(json!(["^/API/(.*)$ http://localhost:3002/api/$1 [P,NC]"]));
    assert_eq!(path(&get(&set, "/Api/notes")), Some("/api/notes"));
    let strict = with_upstreams(json!(["^/API/(.*)$ http://localhost:3002/api/$1 [P]"]));
    assert_eq!(rewrite(&get(&strict, "/api/notes")), &Rewrite::default());
}

#[test]
fn query_handling_keep_replace_append_discard() {
    let set = with_upstreams(json!([
        "^/keep$ /k",
        "^/replace$ /r?b=2",
        "^/append$ /a?b=2 [QSA]",
        "^/drop$ /d?",
        "^/discard$ /q [QSD]"
    ]));
    assert_eq!(path(&get(&set, "/keep?a=1")), Some("/k?a=1"));
    assert_eq!(path(&get(&set, "/replace?a=1")), Some("/r?b=2"));
    assert_eq!(path(&get(&set, "/append?a=1")), Some("/a?b=2&a=1"));
    assert_eq!(path(&get(&set, "/append")), Some("/a?b=2"));
    assert_eq!(path(&get(&set, "/drop?a=1")), Some("/d"));
    assert_eq!(path(&get(&set, "/discard?a=1")), Some("/q"));
}

#[test]
fn qsa_on_a_proxy_rule_keeps_the_query() {
    let set = with_upstreams(json!([
        "^/search/(.*)$ http://localhost:3002/api/notes?q=$1 [P,QSA]"
    ]));
    assert_eq!(
        path(&get(&set, "/search/milk?limit=5")),
        Some("/api/notes?q=milk&limit=5")
    );
}

#[test]
fn match_query_flag_matches_path_and_query() {
    let set = with_upstreams(json!(["^/find\\?id=(\\d+)$ /notes/$1? [MQ]"]));
    assert_eq!(path(&get(&set, "/find?id=42")), Some("/notes/42"));
    assert_eq!(rewrite(&get(&set, "/find")), &Rewrite::default());
    // Without MQ the query is not part of the subject.
    let set = with_upstreams(json!(["^/find\\?id=(\\d+)$ /notes/$1?"]));
    assert_eq!(rewrite(&get(&set, "/find?id=42")), &Rewrite::default());
}

#[test]
fn chain_skips_the_chained_rules_when_one_does_not_apply() {
    let set = with_upstreams(json!([
        "^/a/(.*)$ /b/$1 [C]",
        "^/b/(.*)$ /c/$1 [C]",
        "^/c/(.*)$ /d/$1",
        "^/(.*)$ /z/$1"
    ]));
    // All chained rules apply, then the last rule.
    assert_eq!(path(&get(&set, "/a/x")), Some("/z/d/x"));
    // The head of the chain fails: the whole chain is skipped, even though `/c/` would match.
    let e = get(&set, "/c/x");
    assert_eq!(path(&e), Some("/z/c/x"));
    assert_eq!(e.hits, [3]);
}

#[test]
fn skip_jumps_over_rules() {
    let set = with_upstreams(json!([
        "^/s/ - [S=2]",
        "^(.*)$ /one$1",
        "^(.*)$ /two$1",
        "^(.*)$ /three$1"
    ]));
    assert_eq!(path(&get(&set, "/s/x")), Some("/three/s/x"));
}

#[test]
fn next_restarts_from_the_first_rule() {
    // Replace every `_` with `-`, one per round.
    let set = with_upstreams(json!(["^/(.*)_(.*)$ /$1-$2 [N]"]));
    assert_eq!(path(&get(&set, "/a_b_c")), Some("/a-b-c"));
}

#[test]
fn loop_is_cut_with_500_naming_the_rule() {
    let set = rules(json!({
        "rules": ["^/ok$ /fine", "^/(.*)$ /$1 [N]"],
        "max_rule_applications": 10
    }));
    let e = get(&set, "/spin");
    assert_eq!(answer(&e).0, 500);
    assert_eq!(e.hits.len(), 10);
    let error = e.error.as_deref().unwrap();
    assert!(error.contains("rules[1] `^/(.*)$ /$1 [N]`"), "{error}");
    assert!(error.contains("more than 10 times"), "{error}");
}

#[test]
fn growing_path_is_cut_with_500() {
    let set = rules(json!({
        "rules": ["^/(.*)$ /$1$1 [N]"],
        "max_path_length": 64,
        "max_rule_applications": 1000
    }));
    let e = get(&set, "/ab");
    assert_eq!(answer(&e).0, 500);
    assert!(e.error.as_deref().unwrap().contains("max_path_length 64"));
}

#[test]
fn named_groups_and_condition_groups() {
    let set = with_upstreams(json!([{
        "rule": "^/u/(?<user>[a-z]+)$ /users/${user}/%1",
        "conditions": ["%{HTTP:x-tenant} ^tenant-(\\w+)$"]
    }]));
    let e = set.evaluate(&request("GET", "/u/bob", &[("x-tenant", "tenant-acme")]));
    assert_eq!(path(&e), Some("/users/bob/acme"));
}

#[test]
fn header_condition_switches_the_upstream() {
    let set = with_upstreams(json!([
        "RewriteCond %{HTTP:X-Tenant} =beta [NC]",
        "^/api/(.*)$ http://localhost:3003/api/$1 [P]",
        "^/api/(.*)$ http://localhost:3002/api/$1 [P]"
    ]));
    let beta = set.evaluate(&request("GET", "/api/notes", &[("x-tenant", "BETA")]));
    assert_eq!(rewrite(&beta).upstream.as_deref(), Some("notes_beta"));
    assert_eq!(rewrite(&beta).authority.as_deref(), Some("localhost:3003"));
    assert_eq!(beta.hits, [0]);
    let plain = set.evaluate(&request("GET", "/api/notes", &[]));
    assert_eq!(rewrite(&plain).upstream.as_deref(), Some("notes_api"));
    assert_eq!(plain.hits, [1]);
}

#[test]
fn conditions_on_method_host_query_with_negation_and_or() {
    let set = with_upstreams(json!([
        {
            "pattern": "^/notes$",
            "substitution": "/read-only",
            "flags": ["L"],
            "conditions": [
                {"on": "method", "equals": "GET", "or": true},
                {"on": "method", "equals": "HEAD"},
                {"on": "host", "matches": "^gw\\.example\\.com(:\\d+)?$"},
                {"on": "query", "matches": "(^|&)debug=", "negate": true}
            ]
        }
    ]));
    let run = |method: &str, path: &str| set.evaluate(&request(method, path, &[]));
    assert_eq!(path(&run("GET", "/notes")), Some("/read-only"));
    assert_eq!(path(&run("HEAD", "/notes?x=1")), Some("/read-only?x=1"));
    assert_eq!(path(&run("POST", "/notes")), None);
    assert_eq!(path(&run("GET", "/notes?debug=1")), None);
    let other_host = set.evaluate(&{
        let mut r = request("GET", "/notes", &[]);
        r.0.insert(":authority".into(), "evil.example.com".into());
        r
    });
    assert_eq!(path(&other_host), None);
}

#[test]
fn condition_lines_attach_to_the_next_rule_only() {
    let set = with_upstreams(json!([
        "RewriteCond %{REQUEST_METHOD} =POST",
        "RewriteRule ^/a$ /post-only",
        "^/b$ /always"
    ]));
    assert_eq!(path(&get(&set, "/a")), None);
    assert_eq!(
        path(&set.evaluate(&request("POST", "/a", &[]))),
        Some("/post-only")
    );
    assert_eq!(path(&get(&set, "/b")), Some("/always"));
}

#[test]
fn condition_on_a_rule_group_and_on_https() {
    let set = with_upstreams(json!([
        "RewriteCond $1 !^(admin|internal)$",
        "RewriteCond %{HTTPS} =on",
        "^/([a-z]+)/.*$ /public/$1"
    ]));
    assert_eq!(path(&get(&set, "/docs/x")), Some("/public/docs"));
    assert_eq!(path(&get(&set, "/admin/x")), None);
    let mut plain_http = request("GET", "/docs/x", &[]);
    plain_http.0.insert(":scheme".into(), "http".into());
    assert_eq!(path(&set.evaluate(&plain_http)), None);
}

#[test]
fn negated_pattern() {
    let set = with_upstreams(json!(["!^/(api|static)/ /index.html [L]"]));
    assert_eq!(path(&get(&set, "/app/route")), Some("/index.html"));
    assert_eq!(path(&get(&set, "/api/notes")), None);
}

#[test]
fn request_uri_stays_the_original_path() {
    let set = with_upstreams(json!(["^/a$ /b", "^/b$ /c?from=%{REQUEST_URI}"]));
    assert_eq!(path(&get(&set, "/a")), Some("/c?from=/a"));
}

#[test]
fn values_from_headers_cannot_break_the_request_line() {
    let set = with_upstreams(json!(["^/h$ /to/%{HTTP:x-evil}"]));
    let e = set.evaluate(&request("GET", "/h", &[("x-evil", "a b\r\nx: y#z")]));
    assert_eq!(path(&e), Some("/to/a%20b%0D%0Ax:%20y%23z"));
}

#[test]
fn structured_and_one_line_forms_agree() {
    let one_line = with_upstreams(json!(["^/api/(.*)$ http://localhost:3002/api/$1 [P,QSA]"]));
    let structured = with_upstreams(json!([{
        "pattern": "^/api/(.*)$",
        "substitution": "http://localhost:3002/api/$1",
        "flags": ["P", "QSA"]
    }]));
    for p in ["/api/notes", "/api/notes/1?a=b", "/other"] {
        assert_eq!(get(&one_line, p), get(&structured, p), "{p}");
    }
}

#[test]
fn comments_are_skipped_and_indexes_still_count_them() {
    let set = with_upstreams(json!(["# API", "^/a$ /b [N]", "^/b$ /b [N]"]));
    let e = get(&set, "/a");
    assert_eq!(answer(&e).0, 500);
    assert!(e.error.unwrap().contains("rules[2]"));
}

#[test]
fn a_request_without_path_is_left_alone() {
    let set = with_upstreams(json!(["^(.*)$ /x$1"]));
    let mut connect = request("CONNECT", "", &[]);
    connect.0.remove(":path");
    let e = set.evaluate(&connect);
    assert_eq!(rewrite(&e), &Rewrite::default());
    assert!(e.hits.is_empty());
    // The same rule does apply to a request with a path.
    assert_eq!(path(&get(&set, "/a")), Some("/x/a"));
}

#[test]
fn dollar_takes_one_digit_like_mod_rewrite() {
    let set = with_upstreams(json!(["^/(a)$ /$10"]));
    assert_eq!(path(&get(&set, "/a")), Some("/a0"));
}

#[test]
fn empty_configuration_passes_everything() {
    let set = load(b"").unwrap();
    assert!(set.rules().is_empty());
    assert_eq!(rewrite(&get(&set, "/x?y")), &Rewrite::default());
}

#[test]
fn the_stack_configuration_loads_and_routes_api_to_notes_api() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../envoy/filters/route-rewrite.json"
    ))
    .unwrap()
    .replace("${PUBLIC_URL}", "https://localhost:8443");
    let set = load(text.as_bytes()).unwrap();
    let e = get(&set, "/api/notes");
    assert_eq!(rewrite(&e).upstream.as_deref(), Some("notes_api"));
    assert_eq!(path(&e), Some("/api/notes"));
}

/// Generated rules and requests (proptest): any text in `rule` is either refused at load with a
/// reason or compiled, and a compiled rule set evaluates any request without failing.
#[cfg(not(target_arch = "wasm32"))]
mod properties {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    /// Rules put together from the language's own pieces, so that many of them are valid.
    fn rule_text() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("^"),
            Just("/api/"),
            Just("(.*)"),
            Just("$"),
            Just(" "),
            Just(" "),
            Just("-"),
            Just("$1"),
            Just("$2"),
            Just("/new/$1"),
            Just("http://localhost:3002/api/$1"),
            Just("%{HTTP_HOST}"),
            Just("%{REQUEST_URI}"),
            Just("%{QUERY_STRING}"),
            Just("%{"),
            Just("[R=301,L]"),
            Just("[P]"),
            Just("[F]"),
            Just("[G]"),
            Just("[NC]"),
            Just("[QSA]"),
            Just("[L,R=999]"),
            Just("\""),
            Just("\\"),
            Just("["),
            Just("]"),
            Just("!"),
            Just("x"),
            Just("(?"),
            Just("*"),
            Just("é"),
        ];
        vec(piece, 0..8).prop_map(|pieces| pieces.concat())
    }

    fn path() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("/"),
            Just("api"),
            Just("API"),
            Just("x"),
            Just("?a=1"),
            Just("&b=%20"),
            Just("%2F"),
            Just(".."),
            Just("é"),
            Just("#f"),
        ];
        vec(piece, 0..6).prop_map(|pieces| pieces.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(1000))]
        #[test]
        fn any_rule_loads_or_is_refused_and_any_request_evaluates(
            texts in vec(rule_text(), 1..4),
            paths in vec(path(), 1..4),
        ) {
            let rules: Vec<_> = texts.iter().map(|t| json!({"rule": t})).collect();
            let config = json!({"rules": rules, "upstreams": {"localhost:3002": "notes_api"}});
            let Ok(set) = load(config.to_string().as_bytes()) else {
                return Ok(());
            };
            for path in &paths {
                let _ = set.evaluate(&request("GET", path, &[("x-h", "v")]));
            }
        }
    }
}

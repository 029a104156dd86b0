use std::cell::RefCell;

use super::*;
use crate::extract::RequestError;
use crate::jwks::parse_jwks;
use crate::testkit::*;

#[derive(Default)]
struct Recorder(RefCell<Vec<Metric>>);
impl Metrics for Recorder {
    fn count(&self, m: Metric) {
        self.0.borrow_mut().push(m);
    }
}

const RULES: &str = r#", "rules": [
    {"match": {"path_prefix": "/api/"}, "require": {"scopes": ["demo"]}},
    {"match": {"path_prefix": "/me"}, "require": "token"},
    {"match": {"path_prefix": "/oauth2/"}, "require": "anonymous"}
]"#;

const T: u64 = NOW * 1000;
const KEY: CacheKey = CacheKey::from_bytes([7; 16]);
const WAIT: WaitPolicy = WaitPolicy {
    may_wait: true,
    retry_after_seconds: 2,
};
const NO_WAIT: WaitPolicy = WaitPolicy {
    may_wait: false,
    retry_after_seconds: 2,
};

fn engine(extra: &str, s: &Signer) -> Engine {
    let mut e = Engine::new(config(&format!("{RULES}{extra}")), KEY);
    e.set_keys(parse_jwks(&jwks(&[s])).unwrap().set, 1);
    e
}

fn view<'a>(path: &'a str, auth: Option<&'a str>) -> RequestView<'a> {
    RequestView {
        info: RequestInfo {
            method: "GET",
            path,
            host: "localhost:8443",
        },
        authorization: auth.map(str::as_bytes),
    }
}

fn run(e: &mut Engine, path: &str, auth: Option<&str>) -> Outcome {
    e.decide(&view(path, auth), T, WAIT, &Recorder::default())
}

#[test]
fn rfc6750_matrix() {
    let s = Signer::new("k1");
    let mut e = engine("", &s);
    let demo = format!("Bearer {}", s.token("demo"));
    let other = format!("Bearer {}", s.token("other"));
    let expired = format!("Bearer {}", s.token("demo"));
    assert!(matches!(
        run(&mut e, "/api/notes", Some(&demo)),
        Outcome::Allow(_)
    ));
    assert_eq!(
        run(&mut e, "/api/notes", None),
        Outcome::Deny(Denial::NoToken)
    );
    assert_eq!(
        run(&mut e, "/api/notes", Some("Basic MTIzOnNlY3JldA==")),
        Outcome::Deny(Denial::NoToken)
    );
    assert_eq!(
        run(&mut e, "/api/notes", Some("Bearer")),
        Outcome::Deny(Denial::InvalidRequest(RequestError::EmptyBearer))
    );
    assert_eq!(
        run(&mut e, "/api/notes", Some(&other)),
        Outcome::Deny(Denial::InsufficientScope(vec!["demo".into()]))
    );
    assert!(matches!(
        run(&mut e, "/me", Some(&other)),
        Outcome::Allow(_)
    ));
    assert_eq!(
        run(&mut e, "/me", Some("Bearer a.b.c")),
        Outcome::Deny(Denial::InvalidToken(TokenError::MalformedHeader))
    );
    let late = e.decide(
        &view("/me", Some(&expired)),
        T + 400_000,
        WAIT,
        &Recorder::default(),
    );
    assert_eq!(
        late,
        Outcome::Deny(Denial::InvalidToken(TokenError::Expired))
    );
    // The default rule (no rule matched) needs a token.
    assert_eq!(
        run(&mut e, "/elsewhere", None),
        Outcome::Deny(Denial::NoToken)
    );
}

#[test]
fn anonymous_routes_pass_and_keep_authorization() {
    let s = Signer::new("k1");
    let mut e = engine("", &s);
    let anonymous = Outcome::Allow(Allow {
        anonymous: true,
        ..Allow::default()
    });
    assert_eq!(
        run(&mut e, "/oauth2/token", Some("Basic MTIzOnNlY3JldA==")),
        anonymous
    );
    // Even a garbage bearer token is not judged on an anonymous route.
    assert_eq!(run(&mut e, "/oauth2/token", Some("Bearer !!")), anonymous);
}

#[test]
fn identity_headers_are_set_and_authorization_forwarded_by_default() {
    let s = Signer::new("k1");
    let mut e = engine("", &s);
    let Outcome::Allow(allow) = run(
        &mut e,
        "/api/notes",
        Some(&format!("Bearer {}", s.token("demo read"))),
    ) else {
        panic!("allowed expected");
    };
    assert_eq!(
        allow.identity_headers().collect::<Vec<_>>(),
        [
            (SUBJECT_HEADER, "bob"),
            (CLIENT_ID_HEADER, "123"),
            (SCOPE_HEADER, "demo read"),
        ]
    );
    assert!(!allow.remove_authorization);
    assert_eq!(allow.new_path, None);
}

/// The adapter writes the identity headers as headers the filter owns, without asking again
/// (`ClearedHeaders::set`): every name the engine gives is one its `owned_headers` claims, the
/// fixed ones and the configured claim headers, inside the `x-auth-` prefix or not.
#[test]
fn every_identity_header_is_one_the_filter_owns() {
    let s = Signer::new("k1");
    let mut e = engine(
        r#", "claim_headers": [{"claim": "jti", "header": "x-token-id"},
                              {"claim": "iss", "header": "x-auth-issuer"}]"#,
        &s,
    );
    let token = format!("Bearer {}", s.token("demo"));
    let Outcome::Allow(allow) = run(&mut e, "/api/notes", Some(&token)) else {
        panic!("allowed expected");
    };
    let names: Vec<&str> = allow.identity_headers().map(|(name, _)| name).collect();
    assert_eq!(names.len(), 5, "{names:?}");
    let owned = e.owned_headers();
    for name in names {
        assert!(owned.claims(name.as_bytes()), "{name}");
    }
}

#[test]
fn authorization_and_query_token_stripped_when_configured() {
    let s = Signer::new("k1");
    let mut e = engine(
        r#", "forward_authorization": false, "allow_query_token": true"#,
        &s,
    );
    let t = s.token("demo");
    let Outcome::Allow(a) = run(&mut e, "/api/notes", Some(&format!("Bearer {t}"))) else {
        panic!()
    };
    assert!(a.remove_authorization);
    let path = format!("/api/notes?x=1&access_token={t}");
    let Outcome::Allow(a) = run(&mut e, &path, None) else {
        panic!()
    };
    assert!(!a.remove_authorization);
    assert_eq!(a.new_path.as_deref(), Some("/api/notes?x=1"));
}

#[test]
fn second_use_of_a_token_hits_the_cache() {
    let s = Signer::new("k1");
    let mut e = engine("", &s);
    let auth = format!("Bearer {}", s.token("demo"));
    let rec = Recorder::default();
    for _ in 0..3 {
        assert!(matches!(
            e.decide(&view("/api/notes", Some(&auth)), T, WAIT, &rec),
            Outcome::Allow(_)
        ));
    }
    assert_eq!(
        *rec.0.borrow(),
        vec![Metric::CacheMiss, Metric::CacheHit, Metric::CacheHit]
    );
    // A cached token still gets its scope checked per route.
    let other = format!("Bearer {}", s.token("other"));
    run(&mut e, "/me", Some(&other));
    assert!(matches!(
        run(&mut e, "/api/x", Some(&other)),
        Outcome::Deny(Denial::InsufficientScope(_))
    ));
}

#[test]
fn a_cached_token_answers_as_the_checked_way_would() {
    let s = Signer::new("k1");
    let mut e = engine(r#", "forward_authorization": false"#, &s);
    let t = s.token("demo");
    let auth = format!("Bearer {t}");
    let first = run(&mut e, "/api/notes", Some(&auth));
    assert!(matches!(&first, Outcome::Allow(a) if a.remove_authorization));
    // Found by its bytes, the same answer; another spelling of the scheme finds it too.
    assert_eq!(run(&mut e, "/api/notes", Some(&auth)), first);
    assert_eq!(
        run(&mut e, "/api/notes", Some(&format!("BEARER {t}"))),
        first
    );
    // Anything around the cached token is not that token: it goes the checked way and gets
    // the checked way's answer.
    for (auth, error) in [
        (
            format!("Bearer {t},Bearer {t}"),
            RequestError::MultipleTokens,
        ),
        (format!("Bearer {t} x"), RequestError::BadTokenSyntax),
    ] {
        assert_eq!(
            run(&mut e, "/api/notes", Some(&auth)),
            Outcome::Deny(Denial::InvalidRequest(error)),
            "{auth}"
        );
    }
    // With two spaces or a trailing one the general parser still finds the token.
    for auth in [format!("Bearer  {t}"), format!("Bearer {t} ")] {
        assert_eq!(run(&mut e, "/api/notes", Some(&auth)), first, "{auth}");
    }
}

#[test]
fn with_query_tokens_allowed_a_cached_header_token_is_still_checked_for_a_second_token() {
    let s = Signer::new("k1");
    let mut e = engine(r#", "allow_query_token": true"#, &s);
    let t = s.token("demo");
    let auth = format!("Bearer {t}");
    assert!(matches!(
        run(&mut e, "/api/notes", Some(&auth)),
        Outcome::Allow(_)
    ));
    let path = format!("/api/notes?access_token={t}");
    assert_eq!(
        run(&mut e, &path, Some(&auth)),
        Outcome::Deny(Denial::InvalidRequest(RequestError::MultipleTokens))
    );
}

#[test]
fn cached_token_expires_with_the_token() {
    let s = Signer::new("k1");
    let mut e = engine(r#", "clock_skew_seconds": 0"#, &s);
    let auth = format!("Bearer {}", s.token("demo"));
    let rec = Recorder::default();
    assert!(matches!(
        e.decide(&view("/me", Some(&auth)), T, WAIT, &rec),
        Outcome::Allow(_)
    ));
    let after = e.decide(&view("/me", Some(&auth)), T + 301_000, WAIT, &rec);
    assert_eq!(
        after,
        Outcome::Deny(Denial::InvalidToken(TokenError::Expired))
    );
}

#[test]
fn failures_are_not_cached_so_a_new_key_is_honoured() {
    let s = Signer::new("k1");
    let s2 = Signer::new("k2");
    let mut e = engine("", &s);
    let auth = format!("Bearer {}", s2.token("demo"));
    assert_eq!(
        e.decide(&view("/me", Some(&auth)), T, NO_WAIT, &Recorder::default()),
        Outcome::Deny(Denial::InvalidToken(TokenError::UnknownKid("k2".into())))
    );
    e.set_keys(parse_jwks(&jwks(&[&s, &s2])).unwrap().set, 2);
    assert!(matches!(run(&mut e, "/me", Some(&auth)), Outcome::Allow(_)));
}

#[test]
fn key_set_change_empties_the_cache() {
    let s = Signer::new("k1");
    let s2 = Signer::new("k2");
    let mut e = engine("", &s);
    let auth = format!("Bearer {}", s.token("demo"));
    assert!(matches!(run(&mut e, "/me", Some(&auth)), Outcome::Allow(_)));
    // k1 withdrawn from the JWKS: its tokens stop passing at once, cache or not.
    e.set_keys(parse_jwks(&jwks(&[&s2])).unwrap().set, 2);
    assert_eq!(
        e.decide(&view("/me", Some(&auth)), T, NO_WAIT, &Recorder::default()),
        Outcome::Deny(Denial::InvalidToken(TokenError::UnknownKid("k1".into())))
    );
}

#[test]
fn unknown_kid_asks_for_keys_when_waiting_is_possible() {
    let s = Signer::new("k1");
    let mut e = engine("", &s);
    let auth = format!("Bearer {}", Signer::new("k9").token("demo"));
    assert_eq!(
        run(&mut e, "/me", Some(&auth)),
        Outcome::NeedKeys(Wait::UnknownKid)
    );
}

#[test]
fn without_keys_requests_wait_or_get_503_never_pass() {
    let s = Signer::new("k1");
    let mut e = Engine::new(config(RULES), KEY);
    let auth = format!("Bearer {}", s.token("demo"));
    assert_eq!(
        run(&mut e, "/me", Some(&auth)),
        Outcome::NeedKeys(Wait::NoKeys)
    );
    assert_eq!(
        e.decide(&view("/me", Some(&auth)), T, NO_WAIT, &Recorder::default()),
        Outcome::Deny(Denial::KeysUnavailable {
            retry_after_seconds: 2
        })
    );
    // Garbage is refused at once, keys or not; no token is still a plain 401.
    assert!(matches!(
        run(&mut e, "/me", Some("Bearer x.y.z")),
        Outcome::Deny(Denial::InvalidToken(_))
    ));
    assert_eq!(run(&mut e, "/me", None), Outcome::Deny(Denial::NoToken));
    // Anonymous routes do not need keys.
    assert!(matches!(
        run(&mut e, "/oauth2/token", None),
        Outcome::Allow(_)
    ));
}

#[test]
fn inline_keys_need_no_fetch() {
    let s = Signer::new("k1");
    let jwks_doc = String::from_utf8(jwks(&[&s])).unwrap();
    let json = format!(
        r#"{{"issuer": "{ISSUER}", "audiences": ["{AUDIENCE}"], "jwks": {{"inline": {jwks_doc}}}}}"#
    );
    let mut e = Engine::new(
        crate::config::Config::from_json(json.as_bytes()).unwrap(),
        KEY,
    );
    assert!(e.has_keys());
    let auth = format!("Bearer {}", s.token("demo"));
    assert!(matches!(
        run(&mut e, "/anything", Some(&auth)),
        Outcome::Allow(_)
    ));
    // An unknown kid with inline keys cannot be fetched: 401 at once.
    let other = format!("Bearer {}", Signer::new("k2").token("demo"));
    assert!(matches!(
        run(&mut e, "/anything", Some(&other)),
        Outcome::Deny(Denial::InvalidToken(TokenError::UnknownKid(_)))
    ));
}

#[test]
fn oversized_token_is_refused_before_hashing_or_parsing() {
    let s = Signer::new("k1");
    let mut e = engine("", &s);
    let auth = format!("Bearer {}", "a".repeat(9000));
    let rec = Recorder::default();
    let out = e.decide(&view("/me", Some(&auth)), T, WAIT, &rec);
    assert_eq!(
        out,
        Outcome::Deny(Denial::InvalidToken(TokenError::TooLarge))
    );
    assert!(
        rec.0.borrow().is_empty(),
        "no cache lookup for an oversized token"
    );
}

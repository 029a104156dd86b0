//! The counters the filter reports through the host (Envoy shows them as `wasmcustom.<name>`).

use crate::challenge::Denial;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    Allowed,
    AllowedAnonymous,
    /// By the label of `Denial::label`.
    Denied(&'static str),
    JwksRefreshOk,
    JwksRefreshFailed,
    CacheHit,
    CacheMiss,
}

/// Every metric but the denials, in [`Metric::all`]'s order.
const NOT_DENIALS: [Metric; 6] = [
    Metric::Allowed,
    Metric::AllowedAnonymous,
    Metric::JwksRefreshOk,
    Metric::JwksRefreshFailed,
    Metric::CacheHit,
    Metric::CacheMiss,
];

/// Every denial label, so the adapter can define all counters at configure time.
pub const DENIAL_LABELS: &[&str] = &[
    "missing_token",
    "invalid_request",
    "too_large",
    "malformed",
    "bad_alg",
    "bad_crit",
    "wrong_typ",
    "unknown_key",
    "bad_signature",
    "expired",
    "not_yet_valid",
    "wrong_issuer",
    "wrong_audience",
    "insufficient_scope",
    "keys_unavailable",
];

impl Metric {
    pub fn denied(denial: &Denial) -> Self {
        Metric::Denied(denial.label())
    }

    pub fn name(&self) -> String {
        match self {
            Metric::Allowed => "bearer_auth.allowed".into(),
            Metric::AllowedAnonymous => "bearer_auth.allowed_anonymous".into(),
            Metric::Denied(label) => format!("bearer_auth.denied.{label}"),
            Metric::JwksRefreshOk => "bearer_auth.jwks_refresh.ok".into(),
            Metric::JwksRefreshFailed => "bearer_auth.jwks_refresh.failed".into(),
            Metric::CacheHit => "bearer_auth.cache.hit".into(),
            Metric::CacheMiss => "bearer_auth.cache.miss".into(),
        }
    }

    pub fn all() -> Vec<Metric> {
        let mut all = NOT_DENIALS.to_vec();
        all.extend(DENIAL_LABELS.iter().map(|l| Metric::Denied(l)));
        all
    }

    /// The metric's position in [`Metric::all`]: where the adapter keeps its count.
    pub fn slot(&self) -> usize {
        match self {
            Metric::Denied(label) => {
                let at = DENIAL_LABELS.iter().position(|l| l == label);
                // An unknown label has no counter: a slot past the end counts nowhere.
                NOT_DENIALS.len() + at.unwrap_or(DENIAL_LABELS.len())
            }
            other => NOT_DENIALS
                .iter()
                .position(|m| m == other)
                .unwrap_or(usize::MAX),
        }
    }
}

/// Where counts go: the host's metrics in the adapter, a recorder in tests.
pub trait Metrics {
    fn count(&self, metric: Metric);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::TokenError;

    #[test]
    fn every_denial_label_has_a_counter() {
        let denials = [
            Denial::NoToken,
            Denial::InvalidRequest(crate::extract::RequestError::NotText),
            Denial::InsufficientScope(vec![]),
            Denial::KeysUnavailable {
                retry_after_seconds: 1,
            },
            Denial::InvalidToken(TokenError::TooLarge),
            Denial::InvalidToken(TokenError::Malformed),
            Denial::InvalidToken(TokenError::AlgNone),
            Denial::InvalidToken(TokenError::UnsupportedCrit),
            Denial::InvalidToken(TokenError::WrongType),
            Denial::InvalidToken(TokenError::UnknownKid("k".into())),
            Denial::InvalidToken(TokenError::BadSignature),
            Denial::InvalidToken(TokenError::Expired),
            Denial::InvalidToken(TokenError::NotYetValid),
            Denial::InvalidToken(TokenError::WrongIssuer),
            Denial::InvalidToken(TokenError::WrongAudience),
            Denial::InvalidToken(TokenError::MalformedClaims),
            Denial::InvalidToken(TokenError::NoExpiry),
        ];
        for d in denials {
            assert!(DENIAL_LABELS.contains(&d.label()), "{}", d.label());
        }
    }

    #[test]
    fn every_metric_has_its_own_slot_in_the_defined_list() {
        let all = Metric::all();
        for (at, metric) in all.iter().enumerate() {
            assert_eq!(metric.slot(), at, "{metric:?}");
        }
        assert!(Metric::Denied("no_such_label").slot() >= all.len());
    }
}

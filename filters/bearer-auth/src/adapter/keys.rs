//! The JWKS side of a VM: loading the key set other VMs stored in shared data, starting the
//! fetch when this VM wins the refresh lease, and storing what the callout brought back.

use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, LogLevel, MapType};

use super::VmState;
use super::host::{HostStore, log};
use crate::FILTER_NAME;
use crate::engine::Wait;
use crate::jwks::{MAX_JWKS_BYTES, parse_jwks};
use crate::metrics::{Metric, Metrics};
use crate::refresh::{Acquire, Why};

/// Loads the shared key set into this VM if its generation moved. Returns whether it changed.
pub(super) fn sync_keys(state: &mut VmState) -> bool {
    let Some(refresher) = &state.refresher else {
        return false;
    };
    let (shared, _) = refresher.read(&HostStore);
    if shared.generation == state.engine.generation() {
        return false;
    }
    let Some(document) = refresher.document(&HostStore) else {
        return false;
    };
    match parse_jwks(&document) {
        Ok(parsed) => {
            state.engine.set_keys(parsed.set, shared.generation);
            true
        }
        Err(e) => {
            // The fetcher validated it; seeing this means shared data was tampered with.
            log(
                LogLevel::Warn,
                &format!("{FILTER_NAME}: shared JWKS unusable: {e}"),
            );
            state.engine.mark_generation(shared.generation);
            false
        }
    }
}

pub(super) fn maybe_fetch(state: &mut VmState, now: u64) {
    let Some(refresher) = &state.refresher else {
        return;
    };
    if state.in_flight.is_some() {
        return;
    }
    let wanted = state.wanted.take();
    let why = wanted.unwrap_or(Why::Periodic);
    match refresher.try_acquire(&HostStore, why, now) {
        Acquire::Acquired => {
            let cfg = refresher.config();
            let headers = vec![
                (":method", "GET"),
                (":path", cfg.path.as_str()),
                (":authority", cfg.authority.as_str()),
                ("accept", "application/json"),
            ];
            let timeout = Duration::from_millis(cfg.timeout_ms);
            match hostcalls::dispatch_http_call(&cfg.cluster, headers, None, vec![], timeout) {
                Ok(token) => state.in_flight = Some(token),
                Err(status) => {
                    log(
                        LogLevel::Warn,
                        &format!(
                            "{FILTER_NAME}: JWKS fetch from cluster `{}` could not start: {status:?}",
                            cfg.cluster
                        ),
                    );
                    refresher.complete_failed(&HostStore, now);
                    state.metrics.count(Metric::JwksRefreshFailed);
                }
            }
        }
        Acquire::NotDue => {
            // Nothing will be fetched for these requests (rate limit or retry delay): answer now.
            if wanted.is_some() {
                for w in &mut state.waiters {
                    let kind_matches = match why {
                        Why::UnknownKid => w.kind == Wait::UnknownKid,
                        Why::Periodic => w.kind == Wait::NoKeys,
                    };
                    if kind_matches {
                        w.give_up = true;
                    }
                }
            }
        }
        Acquire::Busy => {}
        Acquire::Failed => {
            log(
                LogLevel::Warn,
                &format!("{FILTER_NAME}: shared data refused the refresh lease"),
            );
        }
    }
}

pub(super) fn finish_fetch(state: &mut VmState, body_size: usize, now: u64) {
    // Whoever asked for a fetch meanwhile is answered by this one: its waiters see the attempt
    // count move.
    state.wanted = None;
    let Some(refresher) = &state.refresher else {
        return;
    };
    let status = hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, ":status")
        .ok()
        .flatten()
        .map(|s| String::from_utf8_lossy(&s).into_owned());
    let result = if status.as_deref() != Some("200") {
        Err(format!(
            "status {}",
            status.as_deref().unwrap_or("none (timeout or reset)")
        ))
    } else if body_size > MAX_JWKS_BYTES {
        Err(format!("body of {body_size} bytes is too large"))
    } else {
        let body = hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
            .ok()
            .flatten()
            .unwrap_or_default();
        match parse_jwks(&body) {
            Ok(parsed) => Ok((body, parsed)),
            Err(e) => Err(e.to_string()),
        }
    };
    match result {
        Ok((body, parsed)) => {
            for skipped in &parsed.skipped {
                log(
                    LogLevel::Warn,
                    &format!("{FILTER_NAME}: JWKS key skipped: {skipped}"),
                );
            }
            if refresher.complete_ok(&HostStore, &body, now) {
                state.metrics.count(Metric::JwksRefreshOk);
                log(
                    LogLevel::Info,
                    &format!("{FILTER_NAME}: JWKS refreshed, {} keys", parsed.set.len()),
                );
                sync_keys(state);
            } else {
                state.metrics.count(Metric::JwksRefreshFailed);
            }
        }
        Err(reason) => {
            log(
                LogLevel::Warn,
                &format!(
                    "{FILTER_NAME}: JWKS refresh failed, keeping the last good keys: {reason}"
                ),
            );
            refresher.complete_failed(&HostStore, now);
            state.metrics.count(Metric::JwksRefreshFailed);
        }
    }
}

//! The host's wall clock, read at most once per callback inside a scope.
//!
//! In the one-module chain, bearer-auth and rate-limit each read the clock while handling the same
//! request headers: two host calls for what is, to a microsecond, the same instant. Inside
//! `with_one_clock_read` the first read is kept and every later one in the scope reuses it.
//! Outside a scope each read goes to the host, so a filter loaded on its own behaves as before.
//! Like the request-header copy, the scope is one callback: a proxy-wasm VM runs one callback at
//! a time on one thread.

use std::cell::Cell;

thread_local! {
    /// `Some` inside a scope: the instant read in it, if any yet.
    static SCOPE: Cell<Option<Option<u64>>> = const { Cell::new(None) };
}

/// Runs `f` with one clock read shared by everything in it (scopes nest: an inner one reuses the
/// outer one's read).
pub fn with_one_clock_read<R>(f: impl FnOnce() -> R) -> R {
    if SCOPE.get().is_some() {
        return f();
    }
    SCOPE.set(Some(None));
    let result = f();
    SCOPE.set(None);
    result
}

/// Nanoseconds since the Unix epoch, as the host gives them; `None` if the host could not tell.
pub fn nanos_since_epoch() -> Option<u64> {
    match SCOPE.get() {
        Some(Some(read)) => Some(read),
        Some(None) => {
            let read = read_host_clock()?;
            SCOPE.set(Some(Some(read)));
            Some(read)
        }
        None => read_host_clock(),
    }
}

/// The raw host call: the SDK's `get_current_time` turns the nanoseconds into a `SystemTime`,
/// which the filters turned back into a number, a round trip through the standard library's time
/// arithmetic (and 128-bit integers, library calls in wasm32) on every request.
fn read_host_clock() -> Option<u64> {
    #[link(wasm_import_module = "env")]
    unsafe extern "C" {
        fn proxy_get_current_time_nanoseconds(return_time: *mut u64) -> u32;
    }
    let mut nanos: u64 = 0;
    // SAFETY: the host writes one u64 through the pointer, which points at a local.
    let status = unsafe { proxy_get_current_time_nanoseconds(&mut nanos) };
    (status == 0).then_some(nanos)
}

//! Request headers through one read of the whole map per callback.
//!
//! `with_request_headers` reads the map once, and every read and write in `f` goes through the
//! copy: reads borrow from it (no host call, no copy), writes reach the host and the copy, and the
//! removal of a header that is not there costs nothing either. Scopes nest: an inner scope (a
//! filter inside the one-module chain, whose outer scope read the map already) reuses the outer
//! copy. Outside a scope each call goes to the host, as before.
//!
//! The copy lives in a thread-local because a proxy-wasm VM runs one callback at a time on one
//! thread, and a callback is exactly the span during which the effective context (and so the
//! request the copy belongs to) cannot change; the scope ends with the callback. Readers share it
//! by reference count (`request_headers`); a write while a reader still holds it gives the copy to
//! the writer and leaves the reader its own (`Rc::make_mut`), so a reader never sees a header
//! change under it, and nothing can panic on a borrow. Readers that let go before writing save
//! that copy.

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::types::{LogLevel, MapType};

use crate::headers::{HeaderSnapshot, OwnedHeaders, WriteNeeded};

thread_local! {
    static SNAPSHOT: RefCell<Option<Rc<HeaderSnapshot>>> = const { RefCell::new(None) };
}

/// Runs `f` with the request headers read once (or with the copy an enclosing scope read).
pub fn with_request_headers<R>(f: impl FnOnce() -> R) -> R {
    let outer = SNAPSHOT.with(|s| s.borrow().is_some());
    if outer {
        return f();
    }
    let snapshot = read_map(MapType::HttpRequestHeaders);
    SNAPSHOT.with(|s| *s.borrow_mut() = Some(Rc::new(snapshot)));
    let result = f();
    SNAPSHOT.with(|s| *s.borrow_mut() = None);
    result
}

/// The request headers, to read values from without copying them (`HeaderSnapshot::value`,
/// `text`): the scope's copy, shared, or outside a scope the map read from the host now.
pub fn request_headers() -> Rc<HeaderSnapshot> {
    SNAPSHOT
        .with(|s| s.borrow().clone())
        .unwrap_or_else(|| Rc::new(read_map(MapType::HttpRequestHeaders)))
}

/// The request headers a filter owns, cleared of the client's copies (`clear_owned_request_headers`).
pub struct ClearedHeaders<'o> {
    filter_name: &'o str,
    /// Whether every removal went through. One the host refused leaves the client's copy in
    /// place, which an add would then sit beside: the writes replace instead.
    cleared: bool,
}

/// Removes every request header `owned` claims: a client's own copies of the headers only this
/// filter may write. The writes of those headers through the result then add them without a
/// pass over the headers to find one to replace, since there is none left. One pass over the
/// copy (or over the map read now, outside a scope) finds them.
pub fn clear_owned_request_headers<'o, N: AsRef<str>>(
    filter_name: &'o str,
    owned: &OwnedHeaders<'_, N>,
) -> ClearedHeaders<'o> {
    // Named before the removals: a copy still held while writing would be copied again.
    let names = request_headers().names_owned(owned);
    let mut cleared = true;
    for name in names {
        // Found just now: a removal, without a second look for it.
        cleared &= write(filter_name, &name, None, WriteNeeded::Replace);
    }
    ClearedHeaders {
        filter_name,
        cleared,
    }
}

impl ClearedHeaders<'_> {
    /// Sets one of the request headers the filter owns: added when every copy was removed, set
    /// as `set_request_header` sets it otherwise. Only for names `owned` claims, each written at
    /// most once after the clearing: a name it does not claim may still have the client's copy,
    /// which the add would sit beside. Each caller's tests hold its names to its `owned`; asking
    /// again here on every write was a case-insensitive comparison of the name each time, about
    /// 150 instructions in the harness (bench/NOTEBOOK.md, "Owned headers written without asking
    /// again").
    pub fn set(&self, name: &str, value: &str) {
        let needed = if self.cleared {
            WriteNeeded::Add
        } else {
            needed_in_scope(name, Some(value))
        };
        write(self.filter_name, name, Some(value), needed);
    }
}

/// Replaces (`Some`) or removes (`None`) a request header. Inside a scope, a write that changes
/// nothing (removing a header the request does not have, or setting the one value it has) makes
/// no host call, and a header the request does not have yet is added rather than replaced: the
/// same result, and Envoy skips looking for copies to remove (about 1K fewer instructions per
/// write, BENCHMARKS.md "Instructions per request"). One pass over the copy decides which, none
/// for the request line's pseudo-headers. A failure is logged under `filter_name`.
pub fn set_request_header(filter_name: &str, name: &str, value: Option<&str>) {
    write(filter_name, name, value, needed_in_scope(name, value));
}

/// What the write needs, by the scope's copy; outside a scope, a replace (which is always right).
fn needed_in_scope(name: &str, value: Option<&str>) -> WriteNeeded {
    SNAPSHOT.with(|s| match s.borrow().as_ref() {
        Some(snap) => snap.write_needed(name, value),
        None => WriteNeeded::Replace,
    })
}

/// Makes the write `needed` says through the host, and in the scope's copy; `false` if the host
/// refused it (logged under `filter_name`).
fn write(filter_name: &str, name: &str, value: Option<&str>, needed: WriteNeeded) -> bool {
    let written = match (needed, value) {
        (WriteNeeded::Nothing, _) => return true,
        (WriteNeeded::Add, Some(value)) => {
            hostcalls::add_map_value(MapType::HttpRequestHeaders, name, value)
        }
        _ => hostcalls::set_map_value(MapType::HttpRequestHeaders, name, value),
    };
    if let Err(status) = written {
        let _ = hostcalls::log(
            LogLevel::Error,
            &format!("{filter_name}: could not set request header `{name}`: {status:?}"),
        );
        return false;
    }
    SNAPSHOT.with(|s| {
        if let Some(snap) = s.borrow_mut().as_mut() {
            let snap = Rc::make_mut(snap);
            match (needed, value) {
                (WriteNeeded::Add, Some(value)) => snap.add_missing(name, value),
                _ => snap.set(name, value),
            }
        }
    });
    true
}

/// Reads a whole header map with the raw host call: the SDK's `get_map` would panic on a name
/// or value that is not UTF-8, which a client controls.
fn read_map(map: MapType) -> HeaderSnapshot {
    #[link(wasm_import_module = "env")]
    unsafe extern "C" {
        fn proxy_get_header_map_pairs(
            map_type: u32,
            return_map_data: *mut *mut u8,
            return_map_size: *mut usize,
        ) -> u32;
    }
    let mut data: *mut u8 = std::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: on success the host hands over `size` bytes it allocated through the SDK's
    // `proxy_on_memory_allocate` (a boxed slice of exactly `size` bytes); ownership is taken once,
    // as the SDK itself does.
    let bytes = unsafe {
        if proxy_get_header_map_pairs(map as u32, &mut data, &mut size) != 0 || data.is_null() {
            return HeaderSnapshot::default();
        }
        Vec::from_raw_parts(data, size, size)
    };
    HeaderSnapshot::decode(bytes)
}

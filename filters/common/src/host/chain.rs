//! What a filter needs to run either as its own module or as one stage of the one-module chain
//! (`filters/chain`): where its configuration comes from, and how a request it paused goes on.
//!
//! As its own module a filter reads the plugin configuration from the host and resumes a paused
//! request itself. Inside the chain, the chain hands each filter its section of the chain's
//! configuration, and a request one filter paused must pass the later filters of the chain
//! before it is resumed; the chain installs both here. A VM runs one callback at a time on one
//! thread, so a thread-local is the VM's own state.

use std::cell::RefCell;
use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{HttpContext, RootContext};
use proxy_wasm::types::BufferType;

/// A filter's root context as a stage of the one-module chain. The chain holds the contexts of
/// one request's stages side by side in its own context, so a stage makes each request's context
/// as a value: one allocation per request for the whole chain, where boxed stage contexts (the
/// SDK's `create_http_context`) would take one per stage, and a list of them one more.
pub trait StageRoot: RootContext + Sized {
    /// The context of one request in this stage.
    type Stream: HttpContext;

    /// The root context of root context id `context_id`, not yet configured.
    fn new(context_id: u32) -> Self;

    /// The context of request `context_id`; `create_http_context` boxes the same.
    fn stream(&self, context_id: u32) -> Self::Stream;
}

/// Decides a request whose context is effective after a filter paused it and now lets it go on:
/// true if the request may be resumed, false if a later stage answered it.
pub type Continuation = Rc<dyn Fn(u32) -> bool>;

thread_local! {
    static SECTION: RefCell<Option<Vec<u8>>> = const { RefCell::new(None) };
    static CONTINUATION: RefCell<Option<Continuation>> = const { RefCell::new(None) };
}

/// The filter's configuration: its section while the chain configures it, else the plugin
/// configuration from the host (empty if there is none).
pub fn plugin_configuration() -> Vec<u8> {
    if let Some(section) = SECTION.with(|s| s.borrow().clone()) {
        return section;
    }
    hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Whether the filter being configured is a stage of the one-module chain (which then owns the
/// root context's tick, among other things).
pub fn configuring_chain_stage() -> bool {
    SECTION.with(|s| s.borrow().is_some())
}

/// Runs `configure` with `section` as what `plugin_configuration` returns.
pub fn with_configuration<R>(section: Vec<u8>, configure: impl FnOnce() -> R) -> R {
    SECTION.with(|s| *s.borrow_mut() = Some(section));
    let result = configure();
    SECTION.with(|s| *s.borrow_mut() = None);
    result
}

/// Installs what runs a request through the rest of the chain before it is resumed.
pub fn set_continuation(continuation: Continuation) {
    CONTINUATION.with(|c| *c.borrow_mut() = Some(continuation));
}

/// Lets the request of the effective context `context_id` go on after the calling filter paused
/// it: through the rest of the chain, if there is one, then back to the host.
pub fn resume_request(context_id: u32) {
    let continuation = CONTINUATION.with(|c| c.borrow().clone());
    let go_on = continuation.is_none_or(|next| next(context_id));
    if go_on {
        let _ = hostcalls::resume_http_request();
    }
}

//! One VM instance of a filter (one Envoy worker's copy), its root context, and the per-VM state
//! the host calls work on.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use wasmtime::{CallHook, Instance, Store, WasmParams, WasmResults};

use crate::abi::len_u32;
use crate::error::{Error, Result};
use crate::host::{Host, HostInner, LogRecord};
use crate::shared_data::lock;
use crate::stream::HttpStream;
use crate::types::{CallResponse, Callout, Headers, LocalResponse, Message};

/// The root context's id. Stream ids follow.
pub(crate) const ROOT_ID: u32 = 1;

/// Per-stream state the host keeps (what Envoy's filter manager would hold).
#[derive(Debug, Default)]
pub(crate) struct StreamState {
    pub(crate) request: Message,
    pub(crate) response: Message,
    /// Body bytes the filter currently sees (buffered since it last returned `Continue`).
    pub(crate) request_buffer: Vec<u8>,
    pub(crate) response_buffer: Vec<u8>,
    pub(crate) properties: HashMap<String, Vec<u8>>,
    pub(crate) local_response: Option<LocalResponse>,
    pub(crate) request_resumed: u32,
    pub(crate) response_resumed: u32,
    pub(crate) reset: bool,
}

/// The answer being delivered through `on_http_call_response` (`None` headers = failed call).
#[derive(Debug, Default)]
pub(crate) struct Delivery {
    pub(crate) response: Option<CallResponse>,
}

/// The store data of a VM: everything host calls need.
pub(crate) struct VmState {
    pub(crate) host: Arc<HostInner>,
    pub(crate) vm_id: u32,
    pub(crate) plugin_configuration: Vec<u8>,
    pub(crate) vm_configuration: Vec<u8>,
    /// The context host calls act on (set before each callback; `proxy_set_effective_context`).
    pub(crate) effective: u32,
    pub(crate) streams: HashMap<u32, StreamState>,
    pub(crate) callouts: BTreeMap<u32, Callout>,
    pub(crate) next_token: u32,
    pub(crate) delivery: Delivery,
    pub(crate) tick_period: Option<Duration>,
    pub(crate) root_properties: HashMap<String, Vec<u8>>,
    pub(crate) rng: u64,
    pub(crate) done_calls: u32,
    pub(crate) crossings: Crossings,
}

/// How often execution crossed the VM boundary: what a host call costs in a real host is mostly
/// the crossing, so these counts compare the host traffic of filters without timing anything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Crossings {
    /// Calls from the host into the module: callbacks, and the allocations for values handed in.
    pub into_wasm: u64,
    /// Calls from the module to the host (proxy-wasm and WASI functions).
    pub to_host: u64,
}

impl Crossings {
    pub fn total(&self) -> u64 {
        self.into_wasm + self.to_host
    }
}

impl std::ops::Sub for Crossings {
    type Output = Crossings;
    fn sub(self, earlier: Crossings) -> Crossings {
        Crossings {
            into_wasm: self.into_wasm.saturating_sub(earlier.into_wasm),
            to_host: self.to_host.saturating_sub(earlier.to_host),
        }
    }
}

impl VmState {
    /// The stream host calls currently act on, if the effective context is a stream.
    pub(crate) fn stream_mut(&mut self) -> Option<&mut StreamState> {
        let id = self.effective;
        self.streams.get_mut(&id)
    }

    pub(crate) fn log(&self, level: crate::abi::LogLevel, message: String) {
        self.host.log(self.vm_id, level, message);
    }

    /// A property by dotted path: the stream's own, then the VM's, then the host's.
    pub(crate) fn property(&self, path: &str) -> Option<Vec<u8>> {
        if let Some(stream) = self.streams.get(&self.effective)
            && let Some(value) = stream_property(stream, path)
        {
            return Some(value);
        }
        if let Some(value) = self.root_properties.get(path) {
            return Some(value.clone());
        }
        lock(&self.host.properties).get(path).cloned()
    }
}

/// Properties Envoy derives from the request, then the ones the test set on the stream.
fn stream_property(stream: &StreamState, path: &str) -> Option<Vec<u8>> {
    if let Some(value) = stream.properties.get(path) {
        return Some(value.clone());
    }
    let header = |name: &str| {
        stream
            .request
            .headers
            .get(name)
            .map(|v| v.as_bytes().to_vec())
    };
    match path {
        "request.path" => header(":path"),
        "request.url_path" => stream
            .request
            .headers
            .get(":path")
            .map(|p| p.split('?').next().unwrap_or_default().as_bytes().to_vec()),
        "request.query" => stream
            .request
            .headers
            .get(":path")
            .map(|p| p.split_once('?').map_or("", |(_, q)| q).as_bytes().to_vec()),
        "request.host" => header(":authority"),
        "request.method" => header(":method"),
        "request.scheme" => header(":scheme"),
        "request.id" => header("x-request-id"),
        "request.useragent" => header("user-agent"),
        "request.referer" => header("referer"),
        "response.code" => stream
            .response
            .headers
            .get(":status")
            .and_then(|s| s.parse::<i64>().ok())
            .map(|c| c.to_le_bytes().to_vec()),
        _ => None,
    }
}

/// One VM instance of the filter. `Send`: a VM can be moved to another OS thread, as Envoy runs
/// one per worker thread. Dropping it drops the instance.
pub struct Vm {
    pub(crate) store: Store<VmState>,
    instance: Instance,
    dead: bool,
    next_context: u32,
}

impl std::fmt::Debug for Vm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vm")
            .field("id", &self.id())
            .finish_non_exhaustive()
    }
}

impl Vm {
    pub(crate) fn start(host: Arc<HostInner>, vm_id: u32) -> Result<Self> {
        let settings = lock(&host.settings).clone();
        let module = host.module.clone();
        let state = VmState {
            host,
            vm_id,
            plugin_configuration: Vec::new(),
            vm_configuration: settings.vm_configuration,
            effective: ROOT_ID,
            streams: HashMap::new(),
            callouts: BTreeMap::new(),
            next_token: 1,
            delivery: Delivery::default(),
            tick_period: None,
            root_properties: HashMap::new(),
            // A fixed seed per VM: `random_get` is reproducible from run to run.
            rng: 0x9E37_79B9_7F4A_7C15 ^ u64::from(vm_id),
            done_calls: 0,
            crossings: Crossings::default(),
        };
        let mut store = Store::new(&module.engine, state);
        // Fuel is only counted (`wasm_operators`), never a limit.
        if crate::host::fuel_metered() {
            store
                .set_fuel(u64::MAX)
                .map_err(|e| Error::Wasmtime(format!("{e:#}")))?;
        }
        store.call_hook(|mut store, hook| {
            let crossings = &mut store.data_mut().crossings;
            match hook {
                CallHook::CallingWasm => crossings.into_wasm += 1,
                CallHook::CallingHost => crossings.to_host += 1,
                CallHook::ReturningFromWasm | CallHook::ReturningFromHost => {}
            }
            Ok(())
        });
        let instance = module
            .linker
            .instantiate(&mut store, &module.module)
            .map_err(|e| Error::Wasmtime(format!("instantiation failed: {e:#}")))?;
        let mut vm = Self {
            store,
            instance,
            dead: false,
            next_context: ROOT_ID + 1,
        };
        // WASI reactor initialisation (runs the SDK's `main!` block), as Envoy does first.
        if vm
            .instance
            .get_export(&mut vm.store, "_initialize")
            .is_some()
        {
            vm.call::<(), ()>("_initialize", ())?;
        } else if vm.instance.get_export(&mut vm.store, "_start").is_some() {
            vm.call::<(), ()>("_start", ())?;
        }
        vm.call::<(u32, u32), ()>("proxy_on_context_create", (ROOT_ID, 0))?;
        let size = len_u32(vm.store.data().vm_configuration.len());
        let started = vm.call::<(u32, u32), u32>("proxy_on_vm_start", (ROOT_ID, size))?;
        if started == 0 {
            let logs = vm.store.data().host.warnings_of(vm_id);
            return Err(Error::VmStartRefused(logs));
        }
        Ok(vm)
    }

    /// Calls the export `name` with the effective context already set. A trap kills the VM.
    pub(crate) fn call<P: WasmParams, R: WasmResults + Default>(
        &mut self,
        name: &'static str,
        params: P,
    ) -> Result<R> {
        if self.dead {
            return Err(Error::VmDead);
        }
        let Some(func) = self.instance.get_func(&mut self.store, name) else {
            // The SDK exports every callback; a module that lacks one simply ignores the event.
            return Ok(R::default());
        };
        let typed = func
            .typed::<P, R>(&self.store)
            .map_err(|e| Error::Wasmtime(format!("export `{name}` has the wrong type: {e:#}")))?;
        match typed.call(&mut self.store, params) {
            Ok(result) => Ok(result),
            Err(err) => {
                self.dead = true;
                let vm_id = self.store.data().vm_id;
                Err(Error::Trap {
                    call: name,
                    message: format!("{err:#}"),
                    logs: self.store.data().host.warnings_of(vm_id),
                })
            }
        }
    }

    /// Calls a callback on `context` (sets the effective context first).
    pub(crate) fn call_on<P: WasmParams, R: WasmResults + Default>(
        &mut self,
        context: u32,
        name: &'static str,
        params: P,
    ) -> Result<R> {
        self.store.data_mut().effective = context;
        self.call(name, params)
    }

    /// This VM's number within its host (as in [`LogRecord::vm`]).
    pub fn id(&self) -> u32 {
        self.store.data().vm_id
    }

    /// The host this VM belongs to.
    pub fn host(&self) -> Host {
        Host {
            inner: Arc::clone(&self.store.data().host),
        }
    }

    /// Whether the VM trapped (it accepts no more calls, like a failed VM in Envoy).
    pub fn is_dead(&self) -> bool {
        self.dead
    }

    /// Hands `config` to `on_configure` and returns its verdict (`true` = accepted).
    pub fn configure(&mut self, config: &str) -> Result<bool> {
        self.store.data_mut().plugin_configuration = config.as_bytes().to_vec();
        let size = len_u32(config.len());
        let accepted =
            self.call_on::<(u32, u32), u32>(ROOT_ID, "proxy_on_configure", (ROOT_ID, size))?;
        Ok(accepted != 0)
    }

    /// Shuts the plugin down as Envoy does when its configuration is replaced or Envoy drains:
    /// the root context's `done`, then (if it is done) its `delete`, which is where a filter
    /// hands over what it still holds (batched counters, say). The VM takes no more calls.
    /// A root that answers "not done yet" is not deleted here.
    pub fn shutdown(&mut self) -> Result<bool> {
        // A module without the export is done at once (proxy-wasm-cpp-host's default).
        let exported = self
            .instance
            .get_func(&mut self.store, "proxy_on_done")
            .is_some();
        let done = !exported || self.call_on::<u32, u32>(ROOT_ID, "proxy_on_done", ROOT_ID)? != 0;
        if done {
            self.call_on::<u32, ()>(ROOT_ID, "proxy_on_delete", ROOT_ID)?;
        }
        self.dead = true;
        Ok(done)
    }

    /// The tick period the filter asked for, if any.
    pub fn tick_period(&self) -> Option<Duration> {
        self.store.data().tick_period
    }

    /// Delivers one tick to the root context (without moving the clock).
    pub fn tick(&mut self) -> Result<()> {
        self.call_on::<u32, ()>(ROOT_ID, "proxy_on_tick", ROOT_ID)
    }

    /// Lets `duration` pass: moves the host's clock forward one tick period at a time, ticking
    /// after each step, as Envoy's timer would. Returns how many ticks were delivered.
    pub fn run_for(&mut self, duration: Duration) -> Result<u32> {
        let clock = self.store.data().host.clock.clone();
        let mut left = duration;
        let mut ticks = 0;
        while let Some(period) = self.tick_period().filter(|p| !p.is_zero() && *p <= left) {
            clock.advance(period);
            left -= period;
            self.time_out_callouts()?;
            self.tick()?;
            ticks += 1;
        }
        clock.advance(left);
        self.time_out_callouts()?;
        Ok(ticks)
    }

    /// Fails (as timed out) every callout whose timeout has passed on the host clock, as Envoy's
    /// timer would; [`Vm::run_for`] does this as time passes. Returns how many timed out.
    pub fn time_out_callouts(&mut self) -> Result<usize> {
        let now = self.store.data().host.clock.now_nanos();
        let expired: Vec<u32> = self
            .store
            .data()
            .callouts
            .values()
            .filter(|c| {
                let timeout = u64::try_from(c.timeout.as_nanos()).unwrap_or(u64::MAX);
                c.dispatched_at_nanos.saturating_add(timeout) <= now
            })
            .map(|c| c.token)
            .collect();
        for token in &expired {
            self.fail_callout(*token)?;
        }
        Ok(expired.len())
    }

    /// Sets a property on the root context (seen by streams unless they override it).
    pub fn set_property(&mut self, path: &str, value: impl Into<Vec<u8>>) {
        self.store
            .data_mut()
            .root_properties
            .insert(path.to_owned(), value.into());
    }

    /// Opens an HTTP stream (a new HTTP context). Drive it with its methods; it is finished
    /// (`on_done`, `on_log`, `on_delete`) by [`HttpStream::finish`] or when dropped.
    pub fn http_stream(&mut self) -> Result<HttpStream<'_>> {
        let id = self.new_stream()?;
        Ok(HttpStream::new(self, id))
    }

    /// Returns to a stream opened earlier (e.g. to answer a callout of one of several streams).
    pub fn stream(&mut self, id: u32) -> Result<HttpStream<'_>> {
        if !self.store.data().streams.contains_key(&id) {
            return Err(Error::Misuse(format!("no open stream {id}")));
        }
        Ok(HttpStream::new(self, id))
    }

    pub(crate) fn new_stream(&mut self) -> Result<u32> {
        let id = self.next_context;
        self.next_context = self.next_context.wrapping_add(1).max(ROOT_ID + 1);
        self.store
            .data_mut()
            .streams
            .insert(id, StreamState::default());
        self.call_on::<(u32, u32), ()>(id, "proxy_on_context_create", (id, ROOT_ID))?;
        Ok(id)
    }

    pub(crate) fn finish_stream(&mut self, id: u32) -> Result<()> {
        if !self.store.data().streams.contains_key(&id) {
            return Ok(());
        }
        let result = (|| {
            self.call_on::<u32, u32>(id, "proxy_on_done", id)?;
            self.call_on::<u32, ()>(id, "proxy_on_log", id)?;
            self.call_on::<u32, ()>(id, "proxy_on_delete", id)
        })();
        let state = self.store.data_mut();
        state.streams.remove(&id);
        state.callouts.retain(|_, c| c.context_id != id);
        result
    }

    /// Callouts dispatched and not yet answered, oldest first.
    pub fn callouts(&self) -> Vec<Callout> {
        self.store.data().callouts.values().cloned().collect()
    }

    /// Answers a callout: delivers `response` through `on_http_call_response` to the context that
    /// dispatched it.
    pub fn respond(&mut self, token: u32, response: CallResponse) -> Result<()> {
        self.deliver(token, Some(response))
    }

    /// Fails a callout (timeout, reset, no healthy upstream): Envoy then calls
    /// `on_http_call_response` with no headers, body or trailers.
    pub fn fail_callout(&mut self, token: u32) -> Result<()> {
        self.deliver(token, None)
    }

    fn deliver(&mut self, token: u32, response: Option<CallResponse>) -> Result<()> {
        let Some(callout) = self.store.data_mut().callouts.remove(&token) else {
            return Err(Error::Misuse(format!(
                "no pending callout with token {token}"
            )));
        };
        let (headers, body, trailers) = response.as_ref().map_or((0, 0, 0), |r| {
            (
                len_u32(r.headers.len()),
                len_u32(r.body.len()),
                len_u32(r.trailers.len()),
            )
        });
        self.store.data_mut().delivery = Delivery { response };
        let context = callout.context_id;
        let result = self.call_on::<(u32, u32, u32, u32, u32), ()>(
            context,
            "proxy_on_http_call_response",
            (context, token, headers, body, trailers),
        );
        self.store.data_mut().delivery = Delivery::default();
        result
    }

    /// Calls `on_queue_ready` for every queue this VM registered that got items since the last
    /// call (Envoy posts that to the owning worker). Returns how many were delivered.
    pub fn deliver_queue_ready(&mut self) -> Result<usize> {
        let ready = self.store.data().host.queues.take_ready(self.id());
        for (queue, context) in &ready {
            self.call_on::<(u32, u32), ()>(*context, "proxy_on_queue_ready", (*context, *queue))?;
        }
        Ok(ready.len())
    }

    /// The lines this VM logged, oldest first.
    pub fn logs(&self) -> Vec<LogRecord> {
        let id = self.id();
        lock(&self.store.data().host.logs)
            .iter()
            .filter(|r| r.vm == id)
            .cloned()
            .collect()
    }

    /// The VM-boundary crossings so far (see [`Crossings`]).
    pub fn crossings(&self) -> Crossings {
        self.store.data().crossings
    }

    /// The wasm operators the module has executed so far (wasmtime's fuel: one unit per
    /// operator, control-flow markers free). Exact and reproducible, so the difference over a
    /// request compares the work of filters' own code where timing it in Envoy drowns in the
    /// machine's noise. A count, not a time: it includes the local-variable moves a compiler
    /// turns into registers, so compare builds of the same code path, not unlike code.
    pub fn wasm_operators(&self) -> u64 {
        u64::MAX - self.store.get_fuel().unwrap_or(u64::MAX)
    }

    /// How many times the filter called `proxy_done`.
    pub fn done_calls(&self) -> u32 {
        self.store.data().done_calls
    }

    pub(crate) fn state(&self) -> &VmState {
        self.store.data()
    }

    pub(crate) fn state_mut(&mut self) -> &mut VmState {
        self.store.data_mut()
    }
}

/// Keeps `Headers` constructors in one place for the stream module.
pub(crate) fn headers(pairs: &[(&str, &str)]) -> Headers {
    Headers::from_pairs(pairs)
}

//! Loading a filter module, and the [`Host`]: what Envoy shares between the VMs of one plugin
//! (shared data, queues, metrics, the clock, logs).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use wasmtime::{Engine, Linker, Module};

use crate::abi::{self, LogLevel};
use crate::clock::Clock;
use crate::error::{Error, LogLine, Result};
use crate::metrics::{MetricValue, Metrics};
use crate::shared_data::{CasRules, SharedData, SharedQueues, lock};
use crate::vm::{Vm, VmState};
use crate::{hostcalls, module_cache, wasi};

/// A compiled filter, checked against the ABI. Compile once (it is the slow part), then make as
/// many [`Host`]s as there are tests; cloning is cheap.
#[derive(Clone)]
pub struct FilterModule {
    pub(crate) engine: Engine,
    pub(crate) module: Module,
    pub(crate) linker: Arc<Linker<VmState>>,
}

impl std::fmt::Debug for FilterModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FilterModule")
            .field("imports", &self.imports())
            .finish_non_exhaustive()
    }
}

impl FilterModule {
    /// Reads and compiles a `.wasm` file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let bytes = std::fs::read(path)
            .map_err(|e| Error::Load(format!("cannot read {}: {e}", path.display())))?;
        Self::from_bytes(&bytes)
    }

    /// Compiles a module from its bytes, refusing any import outside proxy-wasm 0.2.1 and the
    /// WASI set Envoy offers, and any module that lacks the exports the ABI requires.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let engine = engine()?;
        let module =
            module_cache::compile(&engine, bytes).map_err(|e| Error::Load(format!("{e:#}")))?;
        check_imports(&module)?;
        for required in [
            "proxy_abi_version_0_2_1",
            "memory",
            "proxy_on_memory_allocate",
        ] {
            if module.get_export(required).is_none() {
                return Err(Error::MissingExport(required));
            }
        }
        let mut linker = Linker::new(&engine);
        hostcalls::define(&mut linker).map_err(|e| Error::Wasmtime(format!("{e:#}")))?;
        wasi::define(&mut linker).map_err(|e| Error::Wasmtime(format!("{e:#}")))?;
        Ok(Self {
            engine,
            module,
            linker: Arc::new(linker),
        })
    }

    /// The module's imports as `(module, name)`, in the module's order.
    pub fn imports(&self) -> Vec<(String, String)> {
        module_imports(&self.module)
    }
}

fn module_imports(module: &Module) -> Vec<(String, String)> {
    module
        .imports()
        .map(|i| (i.module().to_owned(), i.name().to_owned()))
        .collect()
}

/// Fails on the first import the host does not offer, naming it.
fn check_imports(module: &Module) -> Result<()> {
    for (module_name, name) in module_imports(module) {
        let reason = match module_name.as_str() {
            abi::PROXY_WASM_MODULE if abi::PROXY_WASM_IMPORTS.contains(&name.as_str()) => continue,
            abi::PROXY_WASM_MODULE => "which is not a proxy-wasm 0.2.1 host function",
            abi::WASI_MODULE if abi::WASI_IMPORTS.contains(&name.as_str()) => continue,
            abi::WASI_MODULE => "which is not among the WASI calls a proxy-wasm host offers",
            _ => "from a module that is neither proxy-wasm (`env`) nor WASI preview1",
        };
        return Err(Error::UnsupportedImport {
            module: module_name,
            name,
            reason,
        });
    }
    Ok(())
}

/// One line a filter logged (through `proxy_log`, or WASI stdout/stderr as info/error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// Which VM of the host wrote it.
    pub vm: u32,
    pub level: LogLevel,
    pub message: String,
}

/// Settings the test may change before starting VMs.
#[derive(Debug, Clone, Default)]
pub(crate) struct Settings {
    pub(crate) vm_configuration: Vec<u8>,
    pub(crate) environment: Vec<(String, String)>,
    /// `None`: every cluster exists. `Some`: callouts to others are refused (`BadArgument`).
    pub(crate) clusters: Option<Vec<String>>,
    pub(crate) log_level: Option<LogLevel>,
    pub(crate) echo_logs: bool,
}

pub(crate) struct HostInner {
    pub(crate) module: FilterModule,
    pub(crate) shared_data: SharedData,
    pub(crate) queues: SharedQueues,
    pub(crate) metrics: Metrics,
    pub(crate) clock: Clock,
    pub(crate) logs: Mutex<Vec<LogRecord>>,
    pub(crate) properties: Mutex<HashMap<String, Vec<u8>>>,
    pub(crate) settings: Mutex<Settings>,
    next_vm: AtomicU32,
}

impl HostInner {
    pub(crate) fn log(&self, vm: u32, level: LogLevel, message: String) {
        if lock(&self.settings).echo_logs {
            eprintln!("[vm {vm}] {level:?}: {message}");
        }
        lock(&self.logs).push(LogRecord { vm, level, message });
    }

    pub(crate) fn warnings_of(&self, vm: u32) -> Vec<LogLine> {
        lock(&self.logs)
            .iter()
            .filter(|r| r.vm == vm && r.level >= LogLevel::Warn)
            .map(|r| (r.level, r.message.clone()))
            .collect()
    }
}

/// What Envoy shares between the VMs (worker threads) of one plugin: shared data, shared queues,
/// metrics, the clock, and here also the captured logs. Cheap to clone (a handle); `Send` and
/// `Sync`, so VMs on several OS threads can share one. Each test makes its own: there is no
/// global state, tests run in parallel.
#[derive(Clone)]
pub struct Host {
    pub(crate) inner: Arc<HostInner>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host").finish_non_exhaustive()
    }
}

impl Host {
    /// A fresh host for `module`: empty shared data, no metrics, the clock at
    /// 2026-01-01T00:00:00Z, property `plugin_name` = `wasmgate`.
    pub fn new(module: &FilterModule) -> Self {
        Self::with_clock(module, Clock::default())
    }

    /// A fresh host reading `clock`: hosts of different filters (plugins) in one test share a
    /// clock as Envoy's plugins share real time, e.g. to drive a whole filter chain.
    pub fn with_clock(module: &FilterModule, clock: Clock) -> Self {
        let mut properties = HashMap::new();
        properties.insert("plugin_name".to_owned(), b"wasmgate".to_vec());
        properties.insert("plugin_root_id".to_owned(), Vec::new());
        properties.insert("plugin_vm_id".to_owned(), Vec::new());
        Self {
            inner: Arc::new(HostInner {
                module: module.clone(),
                shared_data: SharedData::default(),
                queues: SharedQueues::default(),
                metrics: Metrics::default(),
                clock,
                logs: Mutex::new(Vec::new()),
                properties: Mutex::new(properties),
                settings: Mutex::new(Settings {
                    echo_logs: std::env::var_os("WASMGATE_HARNESS_ECHO_LOGS").is_some(),
                    ..Settings::default()
                }),
                next_vm: AtomicU32::new(1),
            }),
        }
    }

    /// Compiles `path` and makes a host for it (for a single test; share a [`FilterModule`]
    /// between tests to compile once).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        Ok(Self::new(&FilterModule::from_file(path)?))
    }

    /// Starts a new VM instance of the module (an Envoy worker's copy): `_initialize`, the root
    /// context, `on_vm_start`. Configure it with [`Vm::configure`].
    pub fn start_vm(&self) -> Result<Vm> {
        let id = self.inner.next_vm.fetch_add(1, Ordering::Relaxed);
        Vm::start(Arc::clone(&self.inner), id)
    }

    /// Starts a VM and configures it with `config`, failing with [`Error::ConfigRefused`] (which
    /// carries the filter's log lines) if the filter refuses it.
    pub fn plugin(&self, config: &str) -> Result<Vm> {
        let mut vm = self.start_vm()?;
        if vm.configure(config)? {
            Ok(vm)
        } else {
            Err(Error::ConfigRefused(self.inner.warnings_of(vm.id())))
        }
    }

    /// The clock every VM of this host reads.
    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    /// The shared data every VM of this host reads and writes.
    pub fn shared_data(&self) -> &SharedData {
        &self.inner.shared_data
    }

    /// Makes each shared-data read yield the OS thread, so that VMs on several threads interleave
    /// between a read and the CAS write that follows it: contention tests then prove something
    /// even on a lightly loaded machine.
    pub fn set_contention(&self, on: bool) {
        self.inner.shared_data.set_yield_after_read(on);
    }

    /// Which host's rules shared data follows for a set on a missing key (Envoy's by default).
    pub fn set_cas_rules(&self, rules: CasRules) {
        self.inner.shared_data.set_cas_rules(rules);
    }

    /// Sets a property every stream of every VM sees unless the stream overrides it
    /// (e.g. `route_name`). `path` is dotted: `source.address`.
    pub fn set_property(&self, path: &str, value: impl Into<Vec<u8>>) {
        lock(&self.inner.properties).insert(path.to_owned(), value.into());
    }

    /// The VM configuration handed to `on_vm_start` of VMs started afterwards.
    pub fn set_vm_configuration(&self, config: impl Into<Vec<u8>>) {
        lock(&self.inner.settings).vm_configuration = config.into();
    }

    /// Environment variables the module sees through WASI (Envoy's `environment_variables`).
    pub fn set_environment(&self, vars: &[(&str, &str)]) {
        lock(&self.inner.settings).environment = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
    }

    /// Declares the clusters that exist; a callout to another is refused with `BadArgument`, as
    /// Envoy does. By default every cluster name is accepted.
    pub fn set_clusters(&self, clusters: &[&str]) {
        lock(&self.inner.settings).clusters =
            Some(clusters.iter().map(|c| (*c).to_owned()).collect());
    }

    /// The level `proxy_get_log_level` reports (default: trace, so every line is captured).
    pub fn set_log_level(&self, level: LogLevel) {
        lock(&self.inner.settings).log_level = Some(level);
    }

    /// Every line logged so far by any VM of this host, oldest first.
    pub fn logs(&self) -> Vec<LogRecord> {
        lock(&self.inner.logs).clone()
    }

    /// The messages logged at exactly `level`.
    pub fn logs_at(&self, level: LogLevel) -> Vec<String> {
        lock(&self.inner.logs)
            .iter()
            .filter(|r| r.level == level)
            .map(|r| r.message.clone())
            .collect()
    }

    /// Forgets the logs captured so far.
    pub fn clear_logs(&self) {
        lock(&self.inner.logs).clear();
    }

    /// A metric's value by name, `None` if no VM defined it.
    pub fn metric(&self, name: &str) -> Option<MetricValue> {
        self.inner.metrics.by_name(name)
    }

    /// A counter's value by name (`None` if undefined or not a counter).
    pub fn counter(&self, name: &str) -> Option<u64> {
        match self.metric(name)? {
            MetricValue::Counter(v) => Some(v),
            _ => None,
        }
    }

    /// Every metric defined so far.
    pub fn metrics(&self) -> Vec<(String, MetricValue)> {
        self.inner.metrics.all()
    }
}

/// The wasmtime engine. It meters fuel, so [`crate::Vm::wasm_operators`] can count the work a
/// filter's own code does, exactly and the same on every run. With `WASMGATE_HARNESS_PERFMAP=1`
/// it writes `/tmp/perf-<pid>.map`, so `perf report` names the filters' functions (build the
/// module with its `name` section, and set `WASMGATE_HARNESS_NO_CACHE=1` so it is compiled, not
/// loaded from the cache): the way to see where a filter's own code spends its time, which
/// Envoy's stripped V8 cannot show. `WASMGATE_HARNESS_NO_FUEL=1` turns the metering off for such a
/// profile: its counting is code V8 does not run, 28 % of the instructions of a request through
/// the chain with it (`wasm_operators` then reads 0).
/// Whether the engine meters fuel (`engine`).
pub(crate) fn fuel_metered() -> bool {
    std::env::var_os("WASMGATE_HARNESS_NO_FUEL").is_none_or(|v| v == "0")
}

fn engine() -> Result<Engine> {
    let mut config = wasmtime::Config::new();
    config.consume_fuel(fuel_metered());
    if std::env::var_os("WASMGATE_HARNESS_PERFMAP").is_some_and(|v| v != "0") {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    Engine::new(&config).map_err(|e| Error::Wasmtime(format!("{e:#}")))
}

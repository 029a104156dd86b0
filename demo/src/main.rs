//! The seed scenario's demo servers: the notes API (`notes`) and the demo client pages (`client`).

use std::net::SocketAddr;

use clap::{Parser, Subcommand};

mod client;
mod notes;
mod problem;

#[derive(Parser)]
#[command(about = "wasmgate's demo servers: the notes API and the demo client pages")]
struct Cli {
    #[command(subcommand)]
    server: Server,
}

#[derive(Subcommand)]
enum Server {
    /// The demo notes API (the seed's `note` model) with `/me` and `/protected`.
    Notes {
        #[arg(long, env = "NOTES_LISTEN", default_value = "127.0.0.1:3002")]
        listen: SocketAddr,
    },
    /// The demo client's web pages (`/` and `/callback`).
    Client {
        #[arg(long, env = "DEMO_CLIENT_LISTEN", default_value = "127.0.0.1:3004")]
        listen: SocketAddr,
        /// The gateway's public base URL, used to build links and the redirect URI.
        #[arg(long, env = "PUBLIC_URL", default_value = "https://localhost:8443")]
        public_url: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let (name, listen, app) = match Cli::parse().server {
        Server::Notes { listen } => ("notes API", listen, notes::router()),
        Server::Client { listen, public_url } => {
            ("demo client", listen, client::router(public_url))
        }
    };
    let listener = tokio::net::TcpListener::bind(listen).await?;
    tracing::info!("{name} listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    Ok(())
}

/// Resolves on Ctrl-C or SIGTERM, so the `up` command and the tests can stop us cleanly.
async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(signal) => signal,
        Err(err) => {
            tracing::warn!("cannot listen for SIGTERM: {err}");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

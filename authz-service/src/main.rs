use clap::Parser;

/// wasmgate's OAuth 2.0 authorization server.
#[derive(Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "AUTHZ_LISTEN", default_value = "127.0.0.1:3001")]
    listen: std::net::SocketAddr,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse();
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    tracing::info!("authz-service listening on http://{}", listener.local_addr()?);
    axum::serve(listener, authz_service::router())
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}

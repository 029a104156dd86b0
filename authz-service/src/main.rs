//! Command-line front: `authz-service` serves; subcommands administer the same data directory
//! (safe while the server runs: SQLite in WAL mode).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use authz_service::admin::{self, NewClient};
use authz_service::keys::SigningAlg;
use authz_service::{Authz, Config};
use clap::{Parser, Subcommand};

/// wasmgate's OAuth 2.0 authorization server.
#[derive(Parser)]
#[command(version)]
struct Args {
    /// TOML configuration file (see docs/authz-service.md); flags and env vars override it.
    #[arg(long, env = "AUTHZ_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:3001].
    #[arg(long, env = "AUTHZ_LISTEN", global = true)]
    listen: Option<std::net::SocketAddr>,
    /// Public base URL: the `iss` of tokens [default: https://localhost:8443].
    #[arg(long, env = "AUTHZ_ISSUER", global = true)]
    issuer: Option<String>,
    /// Directory of the database (and demo key files) [default: ./authz-data].
    #[arg(long, env = "AUTHZ_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// Create the demo clients and user on start. Never in a real deployment.
    #[arg(long, env = "AUTHZ_DEMO", global = true,
          value_parser = clap::builder::BoolishValueParser::new())]
    demo: bool,
    /// `aud` of access tokens [default: wasmgate-api].
    #[arg(long, env = "AUTHZ_AUDIENCE", global = true)]
    audience: Option<String>,
    /// Default access token lifetime in seconds [default: 3600].
    #[arg(long, env = "AUTHZ_TOKEN_LIFETIME_SECS", global = true)]
    token_lifetime_secs: Option<i64>,
    /// Signing algorithm of new keys: EdDSA, ES256 or RS256 [default: EdDSA].
    #[arg(long, env = "AUTHZ_KEY_ALGORITHM", global = true)]
    key_algorithm: Option<SigningAlg>,
    /// Take the caller's address from X-Forwarded-For (only behind a trusted proxy).
    #[arg(long, env = "AUTHZ_TRUST_FORWARDED_FOR", global = true,
          value_parser = clap::builder::BoolishValueParser::new())]
    trust_forwarded_for: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Manage clients.
    #[command(subcommand)]
    Client(ClientCommand),
    /// Manage users.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Get a token with a JWT the client signs (the seed's JWT scripts): `private-key-jwt`
    /// authenticates the client with it; `jwt-bearer` uses it as the grant for a subject.
    Token {
        #[arg(value_enum)]
        mode: TokenMode,
        /// Token endpoint to call [default: <issuer>/oauth2/token].
        #[arg(long)]
        token_url: Option<String>,
        /// `aud` of the assertion [default: <issuer>/oauth2/token].
        #[arg(long)]
        audience: Option<String>,
        #[arg(long, default_value = "jwt-demo")]
        client_id: String,
        /// Private key (PEM) registered for the client [default: <data-dir>/demo-jwt-client.pem].
        #[arg(long)]
        key: Option<PathBuf>,
        /// Subject of a jwt-bearer assertion.
        #[arg(long, default_value = "bob")]
        subject: String,
        #[arg(long)]
        scope: Option<String>,
        /// CA certificate to trust for an https token URL (e.g. certs/ca.crt).
        #[arg(long)]
        ca_cert: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum TokenMode {
    PrivateKeyJwt,
    JwtBearer,
}

#[derive(Subcommand)]
enum ClientCommand {
    /// Register a client; a generated secret is printed once.
    Add {
        id: String,
        /// Public client (no secret; can't use client_credentials).
        #[arg(long)]
        public: bool,
        /// No secret: the client authenticates with private_key_jwt only (needs --jwks).
        #[arg(long)]
        no_secret: bool,
        /// Allowed grant type (repeatable) [default: client_credentials].
        #[arg(long = "grant-type")]
        grant_types: Vec<String>,
        /// Allowed scope (repeatable).
        #[arg(long = "scope")]
        scopes: Vec<String>,
        /// Scope granted when none is asked (repeatable) [default: all allowed scopes].
        #[arg(long = "default-scope")]
        default_scopes: Vec<String>,
        /// Exact redirect URI (repeatable).
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
        /// Access token lifetime for this client, in seconds.
        #[arg(long)]
        token_lifetime_secs: Option<i64>,
        /// File holding the client's public keys (a JWKS) for private_key_jwt / JWT bearer.
        #[arg(long)]
        jwks: Option<PathBuf>,
    },
    /// List clients (as JSON lines, without secret hashes).
    List,
    /// Remove a client.
    Remove { id: String },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user; the password is read from the AUTHZ_NEW_PASSWORD env var or stdin.
    Add { username: String },
    /// List users.
    List,
    /// Remove a user.
    Remove { username: String },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// List signing keys and their state.
    List,
    /// Create a new key: published now, signing after the activation delay.
    Rotate {
        #[arg(long)]
        alg: Option<SigningAlg>,
        /// Seconds before the new key signs [default: keys.activation_delay_secs].
        #[arg(long)]
        activate_in: Option<i64>,
    },
    /// Delete retired keys (no longer published).
    Prune,
}

fn config(args: &Args) -> anyhow::Result<Config> {
    let mut c = match &args.config {
        Some(p) => Config::from_file(p).map_err(anyhow::Error::msg)?,
        None => Config::default(),
    };
    if let Some(v) = args.listen {
        c.listen = v;
    }
    if let Some(v) = &args.issuer {
        c.issuer = v.clone();
    }
    if let Some(v) = &args.data_dir {
        c.data_dir = v.clone();
    }
    if let Some(v) = &args.audience {
        c.tokens.audience = v.clone();
    }
    if let Some(v) = args.token_lifetime_secs {
        c.tokens.lifetime_secs = v;
    }
    if let Some(v) = args.key_algorithm {
        c.keys.algorithm = v;
    }
    c.demo |= args.demo;
    c.security.trust_forwarded_for |= args.trust_forwarded_for;
    Ok(c)
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let args = Args::parse();
    let mut cfg = config(&args)?;
    match args.command {
        None | Some(Command::Serve) => serve(cfg),
        Some(Command::Token {
            mode,
            token_url,
            audience,
            client_id,
            key,
            subject,
            scope,
            ca_cert,
        }) => {
            let endpoint = cfg.token_endpoint();
            let key =
                key.unwrap_or_else(|| cfg.data_dir.join(authz_service::demo::JWT_CLIENT_KEY_FILE));
            let key_pem = std::fs::read_to_string(&key)
                .with_context(|| format!("reading {}", key.display()))?;
            let req = authz_service::jwt_client::Request {
                mode: match mode {
                    TokenMode::PrivateKeyJwt => authz_service::jwt_client::Mode::PrivateKeyJwt,
                    TokenMode::JwtBearer => authz_service::jwt_client::Mode::JwtBearer,
                },
                token_url: token_url.as_deref().unwrap_or(&endpoint),
                audience: audience.as_deref().unwrap_or(&endpoint),
                client_id: &client_id,
                subject: &subject,
                key_pem: &key_pem,
                scope: scope.as_deref(),
            };
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (status, body) = rt.block_on(authz_service::jwt_client::request_token(
                &req,
                ca_cert.as_deref(),
            ))?;
            println!("{}", serde_json::to_string_pretty(&body)?);
            if status != 200 {
                anyhow::bail!("the token endpoint answered {status}");
            }
            Ok(())
        }
        Some(cmd) => {
            // Admin commands never seed demo data: they only touch what they are asked to.
            cfg.demo = false;
            let authz = Authz::open(cfg)?;
            run_admin(&authz, cmd)
        }
    }
}

fn serve(cfg: Config) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listen = cfg.listen;
        let authz = Arc::new(tokio::task::spawn_blocking(move || Authz::open(cfg)).await??);
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("binding {listen}"))?;
        tracing::info!(
            issuer = %authz.config.issuer,
            "authz-service listening on http://{}",
            listener.local_addr()?
        );
        authz_service::serve(listener, authz, shutdown_signal()).await?;
        Ok(())
    })
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn run_admin(authz: &Authz, cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Serve | Command::Token { .. } => unreachable_serve(),
        Command::Client(c) => client_cmd(authz, c),
        Command::User(u) => user_cmd(authz, u),
        Command::Keys(k) => keys_cmd(authz, k),
    }
}

fn unreachable_serve() -> anyhow::Result<()> {
    anyhow::bail!("`serve` and `token` are handled before opening the admin context")
}

fn client_cmd(authz: &Authz, cmd: ClientCommand) -> anyhow::Result<()> {
    match cmd {
        ClientCommand::Add {
            id,
            public,
            no_secret,
            grant_types,
            scopes,
            default_scopes,
            redirect_uris,
            token_lifetime_secs,
            jwks,
        } => {
            let jwks = jwks
                .map(|p| -> anyhow::Result<serde_json::Value> {
                    let text = std::fs::read_to_string(&p)
                        .with_context(|| format!("reading {}", p.display()))?;
                    serde_json::from_str(&text)
                        .with_context(|| format!("{} is not JSON", p.display()))
                })
                .transpose()?;
            let grant_types = if grant_types.is_empty() {
                vec!["client_credentials".to_string()]
            } else {
                grant_types
            };
            let secret = admin::add_client(
                authz,
                NewClient {
                    id: id.clone(),
                    public,
                    with_secret: !public && !no_secret,
                    redirect_uris,
                    grant_types,
                    scopes,
                    default_scopes: (!default_scopes.is_empty()).then_some(default_scopes),
                    token_lifetime_secs,
                    jwks,
                },
            )?;
            println!("client_id: {id}");
            if let Some(s) = secret {
                println!("client_secret: {s}");
                eprintln!("(the secret is shown only this once; store it now)");
            }
        }
        ClientCommand::List => {
            for c in authz.storage.list_clients()? {
                println!(
                    "{}",
                    serde_json::json!({
                        "id": c.id, "public": c.public, "has_secret": c.secret_hash.is_some(),
                        "grant_types": c.grant_types, "scopes": c.scopes,
                        "default_scopes": c.default_scopes, "redirect_uris": c.redirect_uris,
                        "token_lifetime_secs": c.token_lifetime_secs,
                        "jwks_keys": c.jwks.as_ref().and_then(|j| j["keys"].as_array().map(Vec::len)),
                    })
                );
            }
        }
        ClientCommand::Remove { id } => {
            if !authz.storage.delete_client(&id)? {
                anyhow::bail!("no client `{id}`");
            }
            println!("removed client {id}");
        }
    }
    Ok(())
}

fn user_cmd(authz: &Authz, cmd: UserCommand) -> anyhow::Result<()> {
    match cmd {
        UserCommand::Add { username } => {
            let password = match std::env::var("AUTHZ_NEW_PASSWORD") {
                Ok(p) => p,
                Err(_) => {
                    let mut line = String::new();
                    std::io::stdin().read_line(&mut line)?;
                    line.trim_end_matches(['\r', '\n']).to_string()
                }
            };
            admin::add_user(authz, &username, &password)?;
            println!("added user {username}");
        }
        UserCommand::List => {
            for u in authz.storage.list_users()? {
                println!("{}", u.username);
            }
        }
        UserCommand::Remove { username } => {
            if !authz.storage.delete_user(&username)? {
                anyhow::bail!("no user `{username}`");
            }
            println!("removed user {username}");
        }
    }
    Ok(())
}

fn keys_cmd(authz: &Authz, cmd: KeysCommand) -> anyhow::Result<()> {
    match cmd {
        KeysCommand::List => {
            for k in admin::list_keys(authz)? {
                println!("{}", serde_json::to_string(&k)?);
            }
        }
        KeysCommand::Rotate { alg, activate_in } => {
            let k = admin::rotate_key(authz, alg, activate_in)?;
            println!("{}", serde_json::to_string(&k)?);
        }
        KeysCommand::Prune => {
            for kid in admin::prune_keys(authz)? {
                println!("pruned {kid}");
            }
        }
    }
    Ok(())
}

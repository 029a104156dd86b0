//! The seed's rate-limiting client script: sends N requests (default 150) to the API with a token
//! and prints, for each, the status, the limit and the remaining count.
//!
//! ```text
//! cargo run -p rate-limit --example rate_limit_client -- \
//!     [--base https://localhost:8443] [--ca-cert certs/ca.crt] [--count 150] \
//!     [--path /api/notes] [--token TOKEN | --client-id 123 --client-secret secret]
//! ```
//!
//! Without `--token`, it first gets one from `<base>/oauth2/token` with the client credentials
//! grant (scope `demo`), as the seed's script did with its demo client.

#[cfg(target_arch = "wasm32")]
fn main() {}

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    match client::run(std::env::args().skip(1).collect()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("rate_limit_client: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod client {
    use std::path::PathBuf;

    struct Options {
        base: String,
        path: String,
        ca_cert: Option<PathBuf>,
        count: u32,
        token: Option<String>,
        client_id: String,
        client_secret: String,
    }

    fn parse(args: Vec<String>) -> Result<Options, String> {
        let mut o = Options {
            base: "https://localhost:8443".into(),
            path: "/api/notes".into(),
            ca_cert: Some(PathBuf::from("certs/ca.crt")).filter(|p| p.is_file()),
            count: 150,
            token: None,
            client_id: "123".into(),
            client_secret: "secret".into(),
        };
        let mut it = args.into_iter();
        while let Some(flag) = it.next() {
            let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
            match flag.as_str() {
                "--base" => o.base = value()?.trim_end_matches('/').to_owned(),
                "--path" => o.path = value()?,
                "--ca-cert" => o.ca_cert = Some(PathBuf::from(value()?)),
                "--count" => {
                    o.count = value()?
                        .parse()
                        .map_err(|_| "--count takes a number".to_owned())?;
                }
                "--token" => o.token = Some(value()?),
                "--client-id" => o.client_id = value()?,
                "--client-secret" => o.client_secret = value()?,
                "-h" | "--help" => {
                    return Err("usage: rate_limit_client [--base URL] [--path PATH] \
                        [--ca-cert PEM] [--count N] [--token T | --client-id ID --client-secret S]"
                        .into());
                }
                other => return Err(format!("unknown argument `{other}` (try --help)")),
            }
        }
        Ok(o)
    }

    pub fn run(args: Vec<String>) -> Result<(), String> {
        let o = parse(args)?;
        let mut builder = reqwest::Client::builder();
        if let Some(ca) = &o.ca_cert {
            let pem = std::fs::read(ca).map_err(|e| format!("{}: {e}", ca.display()))?;
            let cert = reqwest::Certificate::from_pem(&pem).map_err(|e| e.to_string())?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder.build().map_err(|e| e.to_string())?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(async {
            let token = match &o.token {
                Some(t) => t.clone(),
                None => fetch_token(&http, &o).await?,
            };
            println!(
                "{:>4}  {:>6}  {:>5}  {:>9}  {:>11}",
                "#", "status", "limit", "remaining", "retry-after"
            );
            for i in 1..=o.count {
                let response = http
                    .get(format!("{}{}", o.base, o.path))
                    .bearer_auth(&token)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                let h = |name: &str| {
                    response
                        .headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-")
                        .to_owned()
                };
                println!(
                    "{i:>4}  {:>6}  {:>5}  {:>9}  {:>11}",
                    response.status().as_u16(),
                    h("x-ratelimit-limit"),
                    h("x-ratelimit-remaining"),
                    h("retry-after")
                );
            }
            Ok(())
        })
    }

    async fn fetch_token(http: &reqwest::Client, o: &Options) -> Result<String, String> {
        let response = http
            .post(format!("{}/oauth2/token", o.base))
            .basic_auth(&o.client_id, Some(&o.client_secret))
            .form(&[("grant_type", "client_credentials"), ("scope", "demo")])
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let body: serde_json::Value = response.json().await.map_err(|e| e.to_string())?;
        match body["access_token"].as_str() {
            Some(token) if status.is_success() => Ok(token.to_owned()),
            _ => Err(format!("the token endpoint answered {status}: {body}")),
        }
    }
}

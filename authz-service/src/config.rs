//! Service configuration: a TOML file, then environment variables and command-line flags on
//! top (see docs/authz-service.md for every setting and its default).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::keys::SigningAlg;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub listen: SocketAddr,
    /// Public base URL of the service (`iss` of tokens, base of the endpoint URLs).
    pub issuer: String,
    pub data_dir: PathBuf,
    /// Create the demo clients and user on start (never in a real deployment).
    pub demo: bool,
    pub tokens: TokenConfig,
    pub keys: KeyConfig,
    pub security: SecurityConfig,
    /// Authorization code flow, login sessions and refresh tokens (`flows`).
    pub browser: crate::flows::BrowserConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokenConfig {
    pub audience: String,
    /// Default access token lifetime; a client's own setting wins.
    pub lifetime_secs: i64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeyConfig {
    /// Algorithm of the first key and default of `keys rotate`.
    pub algorithm: SigningAlg,
    /// How long a rotated-in key is published before it signs. Keep it above
    /// `jwks_max_age_secs` plus the verifiers' refresh interval.
    pub activation_delay_secs: i64,
    /// `Cache-Control: max-age` of the JWKS.
    pub jwks_max_age_secs: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecurityConfig {
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// Failed client authentications allowed per client id and per address in the window.
    pub auth_failure_limit: u32,
    pub auth_failure_window_secs: i64,
    /// Take the caller's address from the last `X-Forwarded-For` entry (behind Envoy).
    pub trust_forwarded_for: bool,
    /// Largest `exp - now` accepted in a JWT assertion (bounds the replay store).
    pub assertion_max_lifetime_secs: i64,
    /// Clock skew tolerated when checking assertion times.
    pub clock_skew_secs: i64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 3001)),
            issuer: "https://localhost:8443".into(),
            data_dir: PathBuf::from("authz-data"),
            demo: false,
            tokens: TokenConfig::default(),
            keys: KeyConfig::default(),
            security: SecurityConfig::default(),
            browser: crate::flows::BrowserConfig::default(),
        }
    }
}

impl Default for TokenConfig {
    fn default() -> Self {
        TokenConfig {
            audience: "wasmgate-api".into(),
            lifetime_secs: 3600,
        }
    }
}

impl Default for KeyConfig {
    fn default() -> Self {
        KeyConfig {
            algorithm: SigningAlg::EdDSA,
            activation_delay_secs: 900,
            jwks_max_age_secs: 300,
        }
    }
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            max_body_bytes: 64 * 1024,
            auth_failure_limit: 10,
            auth_failure_window_secs: 300,
            trust_forwarded_for: false,
            assertion_max_lifetime_secs: 3600,
            clock_skew_secs: 60,
        }
    }
}

impl Config {
    /// Read a TOML configuration file; unknown keys are an error (a typo must not be ignored).
    pub fn from_file(path: &Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Check the values that have rules beyond their type.
    pub fn validate(&self) -> Result<(), String> {
        let issuer = self.issuer.as_str();
        if !(issuer.starts_with("https://") || issuer.starts_with("http://"))
            || issuer.contains(['?', '#'])
        {
            return Err(format!(
                "issuer `{issuer}` must be an http(s) URL without query or fragment"
            ));
        }
        if self.tokens.lifetime_secs <= 0 {
            return Err("tokens.lifetime_secs must be positive".into());
        }
        if self.tokens.audience.is_empty() {
            return Err("tokens.audience must not be empty".into());
        }
        if self.keys.activation_delay_secs < 0 {
            return Err("keys.activation_delay_secs must not be negative".into());
        }
        if self.security.auth_failure_window_secs <= 0 || self.security.auth_failure_limit == 0 {
            return Err("security.auth_failure_limit and _window_secs must be positive".into());
        }
        if self.security.assertion_max_lifetime_secs <= 0 || self.security.clock_skew_secs < 0 {
            return Err("security.assertion_max_lifetime_secs must be positive and clock_skew_secs not negative".into());
        }
        self.browser.validate()?;
        Ok(())
    }

    /// The issuer without a trailing slash, for building endpoint URLs.
    pub fn base_url(&self) -> &str {
        self.issuer.trim_end_matches('/')
    }

    pub fn token_endpoint(&self) -> String {
        format!("{}/oauth2/token", self.base_url())
    }

    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join("authz.sqlite")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_overrides_defaults_and_unknown_keys_fail() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(
            &p,
            "issuer = \"https://gw.example\"\n[tokens]\nlifetime_secs = 60\n[keys]\nalgorithm = \"ES256\"\n",
        )
        .unwrap();
        let c = Config::from_file(&p).unwrap();
        assert_eq!(c.issuer, "https://gw.example");
        assert_eq!(c.tokens.lifetime_secs, 60);
        assert_eq!(c.tokens.audience, "wasmgate-api");
        assert_eq!(c.keys.algorithm, SigningAlg::ES256);
        c.validate().unwrap();
        std::fs::write(&p, "[tokens]\nlifetime = 60\n").unwrap();
        let e = Config::from_file(&p).unwrap_err();
        assert!(e.contains("lifetime"), "{e}");
    }

    #[test]
    fn validation_names_the_problem() {
        let c = Config {
            issuer: "localhost:8443".into(),
            ..Config::default()
        };
        assert!(c.validate().unwrap_err().contains("issuer"));
    }
}

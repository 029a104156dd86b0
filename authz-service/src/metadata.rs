//! Authorization server metadata (RFC 8414), listing exactly what this build supports.

use serde_json::{Value, json};

use crate::config::Config;

pub fn document(config: &Config) -> Value {
    let base = config.base_url();
    json!({
        "issuer": config.issuer,
        "token_endpoint": config.token_endpoint(),
        "jwks_uri": format!("{base}/.well-known/jwks.json"),
        "grant_types_supported": crate::grants::SUPPORTED,
        // No authorization endpoint yet, so no response types (RFC 8414 §2 requires the member).
        "response_types_supported": [],
        "token_endpoint_auth_methods_supported":
            ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["EdDSA", "ES256", "RS256"],
    })
}

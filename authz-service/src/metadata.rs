//! Authorization server metadata (RFC 8414), listing exactly what this build supports.

use serde_json::{Value, json};

use crate::config::Config;

pub fn document(config: &Config) -> Value {
    let base = config.base_url();
    json!({
        "issuer": config.issuer,
        "token_endpoint": config.token_endpoint(),
        "authorization_endpoint": format!("{base}/oauth2/authorize"),
        "introspection_endpoint": format!("{base}/oauth2/introspect"),
        "revocation_endpoint": format!("{base}/oauth2/revoke"),
        "code_challenge_methods_supported": ["S256"],
        "response_modes_supported": ["query"],
        // RFC 9207: authorization responses carry `iss`.
        "authorization_response_iss_parameter_supported": true,
        "introspection_endpoint_auth_methods_supported":
            ["client_secret_basic", "client_secret_post", "private_key_jwt"],
        "revocation_endpoint_auth_methods_supported":
            ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
        // RFC 8414 §2: required wherever `private_key_jwt` is listed.
        "introspection_endpoint_auth_signing_alg_values_supported": ["EdDSA", "ES256", "RS256"],
        "revocation_endpoint_auth_signing_alg_values_supported": ["EdDSA", "ES256", "RS256"],
        "jwks_uri": format!("{base}/.well-known/jwks.json"),
        "grant_types_supported": crate::grants::SUPPORTED,
        // Only the code flow: the implicit grant is not offered (RFC 9700 §2.1.2).
        "response_types_supported": ["code"],
        // `none`: public clients at the code and refresh grants (PKCE protects them).
        "token_endpoint_auth_methods_supported":
            ["client_secret_basic", "client_secret_post", "private_key_jwt", "none"],
        "token_endpoint_auth_signing_alg_values_supported": ["EdDSA", "ES256", "RS256"],
    })
}

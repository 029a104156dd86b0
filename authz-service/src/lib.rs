//! wasmgate's OAuth 2.0 authorization server, as a library.
//!
//! Layout: `http` is the thin HTTP front; `token_endpoint` runs a token request through
//! `client_auth` and one of the `grants`, and `issuer` signs the result with `keys`. State
//! lives behind `storage::Storage` (SQLite today). `admin` backs the command-line tools.

pub mod admin;
pub mod assertion;
pub mod client_auth;
pub mod clock;
pub mod config;
pub mod demo;
pub mod error;
pub mod flows;
pub mod form;
pub mod grants;
pub mod http;
pub mod issuer;
pub mod jwk;
pub mod jwt_client;
pub mod keys;
pub mod metadata;
pub mod scope;
pub mod secrets;
pub mod service;
pub mod storage;
pub mod throttle;
pub mod token_endpoint;

pub use config::Config;
pub use http::{router, serve};
pub use service::Authz;

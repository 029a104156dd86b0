//! `certs`: a local development CA and a server certificate signed by it.
//!
//! Files (git-ignored) under `certs/`: `ca.crt`, `ca.key`, `server.crt`, `server.key`. The CA is
//! kept as long as it is valid, so a browser or system that trusts it keeps trusting it; the
//! server certificate is remade when it is missing, near expiry or lacks a wanted name.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};
use x509_parser::extensions::GeneralName;

/// Names the gateway answers to: loopback, and the docker-compose service names.
pub const SERVER_NAMES: [&str; 7] = [
    "localhost",
    "127.0.0.1",
    "::1",
    "envoy",
    "authz",
    "notes-api",
    "demo-client",
];

const CA_LIFETIME: Duration = Duration::days(3650);
const SERVER_LIFETIME: Duration = Duration::days(397);
/// Remade when less than this is left, so a run never starts with a certificate about to expire.
const RENEW_BEFORE: Duration = Duration::days(30);

/// The files of a certificate set.
#[derive(Debug, Clone)]
pub struct CertPaths {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
}

impl CertPaths {
    pub fn in_dir(dir: &Path) -> Self {
        Self {
            ca_cert: dir.join("ca.crt"),
            ca_key: dir.join("ca.key"),
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
        }
    }
}

/// What `ensure` did, for the command's output.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Kept,
    RemadeServer,
    RemadeAll,
}

/// Makes sure `dir` holds a valid CA and server certificate; idempotent.
pub fn ensure(dir: &Path) -> Result<(CertPaths, Outcome)> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let paths = CertPaths::in_dir(dir);
    let ca_ok = paths.ca_key.exists() && cert_is_fresh(&paths.ca_cert, &[]);
    let outcome = if !ca_ok {
        make_ca(&paths)?;
        make_server(&paths)?;
        Outcome::RemadeAll
    } else if !(paths.server_key.exists() && cert_is_fresh(&paths.server_cert, &SERVER_NAMES)) {
        make_server(&paths)?;
        Outcome::RemadeServer
    } else {
        Outcome::Kept
    };
    Ok((paths, outcome))
}

/// True when the certificate parses, is valid for at least `RENEW_BEFORE` more, and carries
/// every name in `names` as a subject alternative name.
fn cert_is_fresh(path: &Path, names: &[&str]) -> bool {
    let Ok(pem) = fs::read(path) else {
        return false;
    };
    let Ok((_, pem)) = x509_parser::pem::parse_x509_pem(&pem) else {
        return false;
    };
    let Ok(cert) = pem.parse_x509() else {
        return false;
    };
    let renew_at = OffsetDateTime::now_utc() + RENEW_BEFORE;
    if cert.validity().not_after.to_datetime() < renew_at {
        return false;
    }
    let present: Vec<String> = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(name_text)
            .collect(),
        _ => Vec::new(),
    };
    names.iter().all(|n| present.iter().any(|p| p == n))
}

fn name_text(name: &GeneralName<'_>) -> Option<String> {
    match name {
        GeneralName::DNSName(dns) => Some((*dns).to_owned()),
        GeneralName::IPAddress(bytes) => match bytes.len() {
            4 => <[u8; 4]>::try_from(*bytes)
                .ok()
                .map(|b| std::net::IpAddr::from(b).to_string()),
            16 => <[u8; 16]>::try_from(*bytes)
                .ok()
                .map(|b| std::net::IpAddr::from(b).to_string()),
            _ => None,
        },
        _ => None,
    }
}

fn ca_params() -> Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, "wasmgate development CA");
    params
        .distinguished_name
        .push(DnType::OrganizationName, "wasmgate (development only)");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + CA_LIFETIME;
    Ok(params)
}

fn make_ca(paths: &CertPaths) -> Result<()> {
    let key = KeyPair::generate()?;
    let cert = ca_params()?.self_signed(&key)?;
    write_private(&paths.ca_key, &key.serialize_pem())?;
    write_public(&paths.ca_cert, &cert.pem())
}

fn make_server(paths: &CertPaths) -> Result<()> {
    let ca_key = KeyPair::from_pem(&fs::read_to_string(&paths.ca_key)?)
        .context("the CA key in certs/ is unreadable; delete certs/ca.* to make a new CA")?;
    let ca_pem = fs::read_to_string(&paths.ca_cert)?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key)
        .context("the CA certificate in certs/ is unreadable; delete certs/ca.* to remake it")?;

    let names: Vec<String> = SERVER_NAMES.iter().map(|s| (*s).to_owned()).collect();
    let mut params = CertificateParams::new(names)?;
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::hours(1);
    params.not_after = now + SERVER_LIFETIME;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;
    write_private(&paths.server_key, &key.serialize_pem())?;
    write_public(&paths.server_cert, &cert.pem())
}

/// Writes a private key readable by its owner only, atomically (a reader never sees half a key).
fn write_private(path: &Path, pem: &str) -> Result<()> {
    write_atomic(path, pem, 0o600)
}

fn write_public(path: &Path, pem: &str) -> Result<()> {
    write_atomic(path, pem, 0o644)
}

fn write_atomic(path: &Path, contents: &str, mode: u32) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    fs::set_permissions(&tmp, fs::Permissions::from_mode(mode))?;
    fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("wasmgate-certs-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn makes_keeps_and_renews() {
        let dir = temp_dir("cycle");
        let (paths, outcome) = ensure(&dir).unwrap();
        assert_eq!(outcome, Outcome::RemadeAll);
        assert!(cert_is_fresh(&paths.server_cert, &SERVER_NAMES));
        let mode = fs::metadata(&paths.server_key)
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        let mode = fs::metadata(&paths.ca_key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        let ca_before = fs::read(&paths.ca_cert).unwrap();
        assert_eq!(ensure(&dir).unwrap().1, Outcome::Kept);

        fs::remove_file(&paths.server_cert).unwrap();
        assert_eq!(ensure(&dir).unwrap().1, Outcome::RemadeServer);
        assert_eq!(
            fs::read(&paths.ca_cert).unwrap(),
            ca_before,
            "the CA is kept"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_certificate_missing_a_name_is_not_fresh() {
        let dir = temp_dir("names");
        let (paths, _) = ensure(&dir).unwrap();
        assert!(!cert_is_fresh(&paths.server_cert, &["other.example"]));
        assert!(cert_is_fresh(&paths.server_cert, &["::1", "notes-api"]));
        fs::remove_dir_all(&dir).unwrap();
    }
}

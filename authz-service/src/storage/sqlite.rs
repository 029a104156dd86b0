//! SQLite backend: one file, WAL journal, schema migrations keyed on `PRAGMA user_version`.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, Params, Row, params};

use super::{Client, IssuedToken, KeyRecord, Result, Storage, StorageError, User};

mod flows;

/// Ordered schema migrations; entry `n` takes the schema from version `n` to `n + 1`.
/// Never edit a released entry: append a new one.
const MIGRATIONS: &[&str] = &[
    // 1: initial schema.
    "CREATE TABLE clients (
        id TEXT PRIMARY KEY,
        secret_hash TEXT,
        public INTEGER NOT NULL,
        redirect_uris TEXT NOT NULL,
        grant_types TEXT NOT NULL,
        scopes TEXT NOT NULL,
        default_scopes TEXT NOT NULL,
        token_lifetime_secs INTEGER,
        jwks TEXT,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE users (
        username TEXT PRIMARY KEY,
        password_hash TEXT NOT NULL,
        created_at INTEGER NOT NULL
    );
    CREATE TABLE signing_keys (
        kid TEXT PRIMARY KEY,
        alg TEXT NOT NULL,
        private_der BLOB NOT NULL,
        public_jwk TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        activates_at INTEGER NOT NULL
    );
    CREATE TABLE used_jtis (
        issuer TEXT NOT NULL,
        jti TEXT NOT NULL,
        expires_at INTEGER NOT NULL,
        PRIMARY KEY (issuer, jti)
    );
    CREATE INDEX used_jtis_expiry ON used_jtis (expires_at);
    CREATE TABLE issued_tokens (
        jti TEXT PRIMARY KEY,
        kid TEXT NOT NULL,
        client_id TEXT NOT NULL,
        subject TEXT NOT NULL,
        scope TEXT NOT NULL,
        issued_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL
    );
    CREATE INDEX issued_tokens_kid_expiry ON issued_tokens (kid, expires_at);
    CREATE INDEX issued_tokens_expiry ON issued_tokens (expires_at);
    CREATE TABLE settings (
        name TEXT PRIMARY KEY,
        value BLOB NOT NULL
    );",
    // 2: browser flows (grants, codes, refresh tokens, revocations, consent).
    flows::MIGRATION,
];

pub struct SqliteStorage {
    // One connection: SQLite serialises writers anyway, and our statements are short. Every
    // token request holds it, so the statements a token takes (the client, the signing keys, the
    // issued token; the assertion's `jti`; introspection's lookup; a login's user) are prepared
    // once and kept by the connection (`prepare_cached`) instead of parsed again each time.
    conn: Mutex<Connection>,
}

fn db(e: rusqlite::Error) -> StorageError {
    StorageError::Database(e.to_string())
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| StorageError::Corrupt(e.to_string()))
}

fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| StorageError::Corrupt(e.to_string()))
}

impl SqliteStorage {
    /// Open (creating if needed) the database at `path` and bring its schema up to date.
    /// A new file is created readable by the service's user only: it holds private keys.
    pub fn open(path: &Path) -> Result<SqliteStorage> {
        create_private_file(path)?;
        let conn = Connection::open(path).map_err(db)?;
        Self::init(conn)
    }

    /// A private in-memory database, for unit tests.
    pub fn in_memory() -> Result<SqliteStorage> {
        Self::init(Connection::open_in_memory().map_err(db)?)
    }

    fn init(mut conn: Connection) -> Result<SqliteStorage> {
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(db)?;
        // WAL: readers don't block the writer, and the admin CLI can work beside the server.
        // synchronous=NORMAL in WAL mode: a committed transaction survives a crash of the
        // process (not necessarily of the machine's power).
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
        )
        .map_err(db)?;
        migrate(&mut conn)?;
        Ok(SqliteStorage {
            conn: Mutex::new(conn),
        })
    }

    /// The one row `sql` selects, if any, through the connection's cache of prepared statements.
    fn cached_row<T>(
        &self,
        sql: &str,
        params: impl Params,
        row: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Option<T>> {
        let conn = self.conn();
        conn.prepare_cached(sql)
            .and_then(|mut stmt| stmt.query_row(params, row).optional())
            .map_err(db)
    }

    /// Runs `sql` through the connection's cache of prepared statements; the rows it changed.
    fn cached_execute(&self, sql: &str, params: impl Params) -> Result<usize> {
        let conn = self.conn();
        conn.prepare_cached(sql)
            .and_then(|mut stmt| stmt.execute(params))
            .map_err(db)
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock can't leave SQLite half-written (it rolls back), so a
        // poisoned lock is safe to keep using.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The schema version, for tests and diagnostics.
    pub fn schema_version(&self) -> Result<i64> {
        self.conn()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(db)
    }
}

fn create_private_file(path: &Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if path.exists() {
        return Ok(());
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map(|_| ())
        .map_err(|e| StorageError::Database(format!("creating {}: {e}", path.display())))
}

fn migrate(conn: &mut Connection) -> Result<()> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(db)?;
    let version: i64 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(db)?;
    let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    if version > known {
        return Err(StorageError::Database(format!(
            "database schema version {version} is newer than this build knows ({known})"
        )));
    }
    for (n, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(version).unwrap_or(0))
    {
        tx.execute_batch(sql).map_err(db)?;
        tx.pragma_update(None, "user_version", n + 1).map_err(db)?;
    }
    tx.commit().map_err(db)
}

const CLIENT_COLUMNS: &str = "id, secret_hash, public, redirect_uris, grant_types, scopes, \
                              default_scopes, token_lifetime_secs, jwks, created_at";

type ClientRow = (
    String,
    Option<String>,
    bool,
    String,
    String,
    String,
    String,
    Option<i64>,
    Option<String>,
    i64,
);

fn client_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ClientRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
        r.get(9)?,
    ))
}

fn client_from_row(row: ClientRow) -> Result<Client> {
    let (id, secret_hash, public, ru, gt, sc, ds, lifetime, jwks, created_at) = row;
    Ok(Client {
        id,
        secret_hash,
        public,
        redirect_uris: from_json(&ru)?,
        grant_types: from_json(&gt)?,
        scopes: from_json(&sc)?,
        default_scopes: from_json(&ds)?,
        token_lifetime_secs: lifetime,
        jwks: jwks.as_deref().map(from_json).transpose()?,
        created_at,
    })
}

fn key_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(KeyRecord, String)> {
    Ok((
        KeyRecord {
            kid: r.get(0)?,
            alg: r.get(1)?,
            private_der: r.get(2)?,
            public_jwk: serde_json::Value::Null,
            created_at: r.get(4)?,
            activates_at: r.get(5)?,
            last_token_exp: r.get(6)?,
        },
        r.get(3)?,
    ))
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _)
        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
            || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE)
}

impl Storage for SqliteStorage {
    fn client(&self, id: &str) -> Result<Option<Client>> {
        let sql = format!("SELECT {CLIENT_COLUMNS} FROM clients WHERE id = ?1");
        let row = self.cached_row(&sql, [id], client_row)?;
        row.map(client_from_row).transpose()
    }

    fn insert_client(&self, c: &Client) -> Result<()> {
        let jwks = c.jwks.as_ref().map(to_json).transpose()?;
        self.conn()
            .execute(
                &format!(
                    "INSERT INTO clients ({CLIENT_COLUMNS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)"
                ),
                params![
                    c.id,
                    c.secret_hash,
                    c.public,
                    to_json(&c.redirect_uris)?,
                    to_json(&c.grant_types)?,
                    to_json(&c.scopes)?,
                    to_json(&c.default_scopes)?,
                    c.token_lifetime_secs,
                    jwks,
                    c.created_at
                ],
            )
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StorageError::Conflict(format!("client `{}`", c.id))
                } else {
                    db(e)
                }
            })?;
        Ok(())
    }

    fn list_clients(&self) -> Result<Vec<Client>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!("SELECT {CLIENT_COLUMNS} FROM clients ORDER BY id"))
            .map_err(db)?;
        let rows = stmt
            .query_map([], client_row)
            .map_err(db)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(db)?;
        rows.into_iter().map(client_from_row).collect()
    }

    fn delete_client(&self, id: &str) -> Result<bool> {
        let n = self
            .conn()
            .execute("DELETE FROM clients WHERE id = ?1", [id])
            .map_err(db)?;
        Ok(n > 0)
    }

    fn user(&self, username: &str) -> Result<Option<User>> {
        self.cached_row(
            "SELECT username, password_hash, created_at FROM users WHERE username = ?1",
            [username],
            |r| {
                Ok(User {
                    username: r.get(0)?,
                    password_hash: r.get(1)?,
                    created_at: r.get(2)?,
                })
            },
        )
    }

    fn insert_user(&self, u: &User) -> Result<()> {
        self.conn()
            .execute(
                "INSERT INTO users (username, password_hash, created_at) VALUES (?1, ?2, ?3)",
                params![u.username, u.password_hash, u.created_at],
            )
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StorageError::Conflict(format!("user `{}`", u.username))
                } else {
                    db(e)
                }
            })?;
        Ok(())
    }

    fn list_users(&self) -> Result<Vec<User>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT username, password_hash, created_at FROM users ORDER BY username")
            .map_err(db)?;
        stmt.query_map([], |r| {
            Ok(User {
                username: r.get(0)?,
                password_hash: r.get(1)?,
                created_at: r.get(2)?,
            })
        })
        .map_err(db)?
        .collect::<rusqlite::Result<Vec<_>>>()
        .map_err(db)
    }

    fn delete_user(&self, username: &str) -> Result<bool> {
        let n = self
            .conn()
            .execute("DELETE FROM users WHERE username = ?1", [username])
            .map_err(db)?;
        Ok(n > 0)
    }

    fn keys(&self) -> Result<Vec<KeyRecord>> {
        let conn = self.conn();
        // Oldest first. Timestamps are whole seconds, so a key rotated in during the second the
        // previous one was made ties with it: insertion order (rowid) breaks the tie, so the
        // newest key signs, never a random one of the two.
        let mut stmt = conn
            .prepare_cached(
                "SELECT k.kid, k.alg, k.private_der, k.public_jwk, k.created_at, k.activates_at,
                        (SELECT MAX(t.expires_at) FROM issued_tokens t WHERE t.kid = k.kid)
                 FROM signing_keys k ORDER BY k.activates_at, k.created_at, k.rowid",
            )
            .map_err(db)?;
        let rows = stmt
            .query_map([], key_from_row)
            .map_err(db)?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(db)?;
        rows.into_iter()
            .map(|(mut k, jwk)| {
                k.public_jwk = from_json(&jwk)?;
                Ok(k)
            })
            .collect()
    }

    fn insert_key(&self, k: &KeyRecord) -> Result<()> {
        self.conn()
            .execute(
                "INSERT INTO signing_keys (kid, alg, private_der, public_jwk, created_at, activates_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    k.kid,
                    k.alg,
                    k.private_der,
                    to_json(&k.public_jwk)?,
                    k.created_at,
                    k.activates_at
                ],
            )
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StorageError::Conflict(format!("key `{}`", k.kid))
                } else {
                    db(e)
                }
            })?;
        Ok(())
    }

    fn delete_key(&self, kid: &str) -> Result<bool> {
        let n = self
            .conn()
            .execute("DELETE FROM signing_keys WHERE kid = ?1", [kid])
            .map_err(db)?;
        Ok(n > 0)
    }

    fn consume_jti(&self, issuer: &str, jti: &str, expires_at: i64) -> Result<bool> {
        // The primary key makes this atomic: a second insert of the pair changes nothing.
        let n = self.cached_execute(
            "INSERT OR IGNORE INTO used_jtis (issuer, jti, expires_at) VALUES (?1, ?2, ?3)",
            params![issuer, jti, expires_at],
        )?;
        Ok(n == 1)
    }

    fn record_token(&self, t: &IssuedToken) -> Result<()> {
        self.cached_execute(
            "INSERT INTO issued_tokens (jti, kid, client_id, subject, scope, issued_at, expires_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                t.jti,
                t.kid,
                t.client_id,
                t.subject,
                t.scope,
                t.issued_at,
                t.expires_at
            ],
        )?;
        Ok(())
    }

    fn issued_token(&self, jti: &str) -> Result<Option<IssuedToken>> {
        self.cached_row(
            "SELECT jti, kid, client_id, subject, scope, issued_at, expires_at
             FROM issued_tokens WHERE jti = ?1",
            [jti],
            |r| {
                Ok(IssuedToken {
                    jti: r.get(0)?,
                    kid: r.get(1)?,
                    client_id: r.get(2)?,
                    subject: r.get(3)?,
                    scope: r.get(4)?,
                    issued_at: r.get(5)?,
                    expires_at: r.get(6)?,
                })
            },
        )
    }

    fn secret_setting(&self, name: &str, make: &dyn Fn() -> Vec<u8>) -> Result<Vec<u8>> {
        let conn = self.conn();
        conn.execute(
            "INSERT OR IGNORE INTO settings (name, value) VALUES (?1, ?2)",
            params![name, make()],
        )
        .map_err(db)?;
        conn.query_row("SELECT value FROM settings WHERE name = ?1", [name], |r| {
            r.get(0)
        })
        .map_err(db)
    }

    fn purge_expired(&self, now: i64) -> Result<()> {
        let conn = self.conn();
        conn.execute("DELETE FROM used_jtis WHERE expires_at < ?1", [now])
            .map_err(db)?;
        conn.execute("DELETE FROM issued_tokens WHERE expires_at < ?1", [now])
            .map_err(db)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(id: &str) -> Client {
        Client {
            id: id.into(),
            secret_hash: Some("h".into()),
            public: false,
            redirect_uris: vec!["https://x/cb".into()],
            grant_types: vec!["client_credentials".into()],
            scopes: vec!["demo".into()],
            default_scopes: vec!["demo".into()],
            token_lifetime_secs: Some(60),
            jwks: Some(serde_json::json!({"keys": []})),
            created_at: 1,
        }
    }

    #[test]
    fn clients_round_trip_and_conflict() {
        let s = SqliteStorage::in_memory().unwrap();
        s.insert_client(&client("a")).unwrap();
        assert_eq!(s.client("a").unwrap(), Some(client("a")));
        assert!(matches!(
            s.insert_client(&client("a")),
            Err(StorageError::Conflict(_))
        ));
        assert_eq!(s.list_clients().unwrap().len(), 1);
        assert!(s.delete_client("a").unwrap());
        assert!(!s.delete_client("a").unwrap());
        assert_eq!(s.client("a").unwrap(), None);
    }

    #[test]
    fn jti_is_consumed_once_and_purged_after_expiry() {
        let s = SqliteStorage::in_memory().unwrap();
        assert!(s.consume_jti("c", "j1", 100).unwrap());
        assert!(!s.consume_jti("c", "j1", 100).unwrap());
        assert!(s.consume_jti("other", "j1", 100).unwrap());
        s.purge_expired(101).unwrap();
        assert!(s.consume_jti("c", "j1", 200).unwrap());
    }

    #[test]
    fn keys_report_their_last_token_expiry() {
        let s = SqliteStorage::in_memory().unwrap();
        let key = KeyRecord {
            kid: "k1".into(),
            alg: "EdDSA".into(),
            private_der: vec![1, 2],
            public_jwk: serde_json::json!({"kty": "OKP"}),
            created_at: 1,
            activates_at: 1,
            last_token_exp: None,
        };
        s.insert_key(&key).unwrap();
        assert_eq!(s.keys().unwrap(), vec![key.clone()]);
        for (jti, exp) in [("t1", 50), ("t2", 70)] {
            s.record_token(&IssuedToken {
                jti: jti.into(),
                kid: "k1".into(),
                client_id: "c".into(),
                subject: "c".into(),
                scope: "demo".into(),
                issued_at: 1,
                expires_at: exp,
            })
            .unwrap();
        }
        assert_eq!(s.keys().unwrap()[0].last_token_exp, Some(70));
        assert_eq!(s.issued_token("t1").unwrap().unwrap().expires_at, 50);
    }

    #[test]
    fn settings_keep_the_first_value() {
        let s = SqliteStorage::in_memory().unwrap();
        assert_eq!(s.secret_setting("k", &|| vec![1]).unwrap(), vec![1]);
        assert_eq!(s.secret_setting("k", &|| vec![2]).unwrap(), vec![1]);
    }

    #[test]
    fn migrations_are_idempotent_on_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        {
            let s = SqliteStorage::open(&path).unwrap();
            s.insert_client(&client("a")).unwrap();
        }
        let s = SqliteStorage::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap(), MIGRATIONS.len() as i64);
        assert!(s.client("a").unwrap().is_some());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

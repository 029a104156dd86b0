//! SQLite side of `FlowStore` (schema in [`MIGRATION`]).

use rusqlite::{OptionalExtension, params};

use super::{SqliteStorage, db};
use crate::storage::Result;
use crate::storage::flows::{
    CodeRecord, CodeUse, FlowStore, GrantRecord, RefreshRecord, RefreshState, RefreshUse,
};

/// Schema of the browser flows (its own migration, appended to `MIGRATIONS`).
pub(super) const MIGRATION: &str = "
    CREATE TABLE oauth_grants (
        id TEXT PRIMARY KEY,
        client_id TEXT NOT NULL,
        subject TEXT NOT NULL,
        scope TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        revoked_at INTEGER
    );
    CREATE TABLE auth_codes (
        code_hash TEXT PRIMARY KEY,
        grant_id TEXT NOT NULL,
        client_id TEXT NOT NULL,
        redirect_uri TEXT NOT NULL,
        subject TEXT NOT NULL,
        scope TEXT NOT NULL,
        code_challenge TEXT,
        expires_at INTEGER NOT NULL,
        used_at INTEGER
    );
    CREATE INDEX auth_codes_expiry ON auth_codes (expires_at);
    CREATE TABLE refresh_tokens (
        token_hash TEXT PRIMARY KEY,
        grant_id TEXT NOT NULL,
        client_id TEXT NOT NULL,
        subject TEXT NOT NULL,
        scope TEXT NOT NULL,
        issued_at INTEGER NOT NULL,
        expires_at INTEGER NOT NULL,
        used_at INTEGER,
        revoked_at INTEGER
    );
    CREATE INDEX refresh_tokens_grant ON refresh_tokens (grant_id);
    CREATE INDEX refresh_tokens_expiry ON refresh_tokens (expires_at);
    CREATE TABLE grant_access_tokens (
        jti TEXT PRIMARY KEY,
        grant_id TEXT NOT NULL
    );
    CREATE INDEX grant_access_tokens_grant ON grant_access_tokens (grant_id);
    CREATE TABLE revoked_access_tokens (
        jti TEXT PRIMARY KEY,
        expires_at INTEGER NOT NULL
    );
    CREATE TABLE consents (
        subject TEXT NOT NULL,
        client_id TEXT NOT NULL,
        scopes TEXT NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (subject, client_id)
    );";

fn refresh_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RefreshRecord> {
    Ok(RefreshRecord {
        token_hash: r.get(0)?,
        grant_id: r.get(1)?,
        client_id: r.get(2)?,
        subject: r.get(3)?,
        scope: r.get(4)?,
        issued_at: r.get(5)?,
        expires_at: r.get(6)?,
    })
}

const REFRESH_COLUMNS: &str =
    "t.token_hash, t.grant_id, t.client_id, t.subject, t.scope, t.issued_at, t.expires_at";

impl FlowStore for SqliteStorage {
    fn insert_grant(&self, g: &GrantRecord) -> Result<()> {
        self.conn()
            .execute(
                "INSERT INTO oauth_grants (id, client_id, subject, scope, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![g.id, g.client_id, g.subject, g.scope, g.created_at],
            )
            .map_err(db)?;
        Ok(())
    }

    fn revoke_grant(&self, grant_id: &str, now: i64) -> Result<()> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db)?;
        tx.execute(
            "UPDATE oauth_grants SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL",
            params![grant_id, now],
        )
        .map_err(db)?;
        tx.execute(
            "UPDATE refresh_tokens SET revoked_at = ?2 WHERE grant_id = ?1 AND revoked_at IS NULL",
            params![grant_id, now],
        )
        .map_err(db)?;
        tx.commit().map_err(db)
    }

    fn grant_revoked(&self, grant_id: &str) -> Result<bool> {
        let revoked: Option<Option<i64>> = self
            .conn()
            .query_row(
                "SELECT revoked_at FROM oauth_grants WHERE id = ?1",
                [grant_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(db)?;
        // An unknown grant is as good as revoked: nothing may be issued from it.
        Ok(!matches!(revoked, Some(None)))
    }

    fn insert_code(&self, c: &CodeRecord) -> Result<()> {
        self.conn()
            .execute(
                "INSERT INTO auth_codes (code_hash, grant_id, client_id, redirect_uri, subject,
                                         scope, code_challenge, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    c.code_hash,
                    c.grant_id,
                    c.client_id,
                    c.redirect_uri,
                    c.subject,
                    c.scope,
                    c.code_challenge,
                    c.expires_at
                ],
            )
            .map_err(db)?;
        Ok(())
    }

    fn consume_code(&self, code_hash: &str, now: i64) -> Result<CodeUse> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db)?;
        let row = tx
            .query_row(
                "SELECT code_hash, grant_id, client_id, redirect_uri, subject, scope,
                        code_challenge, expires_at, used_at
                 FROM auth_codes WHERE code_hash = ?1",
                [code_hash],
                |r| {
                    Ok((
                        CodeRecord {
                            code_hash: r.get(0)?,
                            grant_id: r.get(1)?,
                            client_id: r.get(2)?,
                            redirect_uri: r.get(3)?,
                            subject: r.get(4)?,
                            scope: r.get(5)?,
                            code_challenge: r.get(6)?,
                            expires_at: r.get(7)?,
                        },
                        r.get::<_, Option<i64>>(8)?,
                    ))
                },
            )
            .optional()
            .map_err(db)?;
        let out = match row {
            None => CodeUse::Unknown,
            Some((rec, Some(_))) => CodeUse::Reused {
                grant_id: rec.grant_id,
            },
            Some((rec, None)) => {
                tx.execute(
                    "UPDATE auth_codes SET used_at = ?2 WHERE code_hash = ?1",
                    params![code_hash, now],
                )
                .map_err(db)?;
                CodeUse::Fresh(rec)
            }
        };
        tx.commit().map_err(db)?;
        Ok(out)
    }

    fn link_access_token(&self, jti: &str, grant_id: &str) -> Result<()> {
        self.conn()
            .execute(
                "INSERT INTO grant_access_tokens (jti, grant_id) VALUES (?1, ?2)",
                params![jti, grant_id],
            )
            .map_err(db)?;
        Ok(())
    }

    fn revoke_access_token(&self, jti: &str, expires_at: i64) -> Result<()> {
        self.conn()
            .execute(
                "INSERT OR IGNORE INTO revoked_access_tokens (jti, expires_at) VALUES (?1, ?2)",
                params![jti, expires_at],
            )
            .map_err(db)?;
        Ok(())
    }

    fn access_token_revoked(&self, jti: &str) -> Result<bool> {
        self.conn()
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM revoked_access_tokens WHERE jti = ?1)
                     OR EXISTS (SELECT 1 FROM grant_access_tokens a
                                JOIN oauth_grants g ON g.id = a.grant_id
                                WHERE a.jti = ?1 AND g.revoked_at IS NOT NULL)",
                [jti],
                |r| r.get(0),
            )
            .map_err(db)
    }

    fn insert_refresh(&self, t: &RefreshRecord) -> Result<()> {
        self.conn()
            .execute(
                "INSERT INTO refresh_tokens (token_hash, grant_id, client_id, subject, scope,
                                             issued_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    t.token_hash,
                    t.grant_id,
                    t.client_id,
                    t.subject,
                    t.scope,
                    t.issued_at,
                    t.expires_at
                ],
            )
            .map_err(db)?;
        Ok(())
    }

    fn consume_refresh(&self, token_hash: &str, now: i64) -> Result<RefreshUse> {
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(db)?;
        let row = tx
            .query_row(
                &format!(
                    "SELECT {REFRESH_COLUMNS}, t.used_at, t.revoked_at, g.revoked_at
                     FROM refresh_tokens t LEFT JOIN oauth_grants g ON g.id = t.grant_id
                     WHERE t.token_hash = ?1"
                ),
                [token_hash],
                |r| {
                    Ok((
                        refresh_row(r)?,
                        r.get::<_, Option<i64>>(7)?,
                        r.get::<_, Option<i64>>(8)?,
                        r.get::<_, Option<i64>>(9)?,
                    ))
                },
            )
            .optional()
            .map_err(db)?;
        let out = match row {
            None => RefreshUse::Unknown,
            Some((rec, _, token_revoked, grant_revoked))
                if token_revoked.is_some() || grant_revoked.is_some() =>
            {
                RefreshUse::Revoked {
                    grant_id: rec.grant_id,
                }
            }
            Some((rec, Some(_), _, _)) => RefreshUse::Reused {
                grant_id: rec.grant_id,
            },
            Some((rec, None, _, _)) => {
                tx.execute(
                    "UPDATE refresh_tokens SET used_at = ?2 WHERE token_hash = ?1",
                    params![token_hash, now],
                )
                .map_err(db)?;
                RefreshUse::Fresh(rec)
            }
        };
        tx.commit().map_err(db)?;
        Ok(out)
    }

    fn refresh_state(&self, token_hash: &str) -> Result<Option<RefreshState>> {
        self.conn()
            .query_row(
                &format!(
                    "SELECT {REFRESH_COLUMNS}, t.used_at, t.revoked_at, g.revoked_at
                     FROM refresh_tokens t LEFT JOIN oauth_grants g ON g.id = t.grant_id
                     WHERE t.token_hash = ?1"
                ),
                [token_hash],
                |r| {
                    Ok(RefreshState {
                        record: refresh_row(r)?,
                        used: r.get::<_, Option<i64>>(7)?.is_some(),
                        revoked: r.get::<_, Option<i64>>(8)?.is_some()
                            || r.get::<_, Option<i64>>(9)?.is_some(),
                    })
                },
            )
            .optional()
            .map_err(db)
    }

    fn remembered_consent(&self, subject: &str, client_id: &str) -> Result<Vec<String>> {
        let scopes: Option<String> = self
            .conn()
            .query_row(
                "SELECT scopes FROM consents WHERE subject = ?1 AND client_id = ?2",
                params![subject, client_id],
                |r| r.get(0),
            )
            .optional()
            .map_err(db)?;
        Ok(scopes
            .map(|s| {
                s.split(' ')
                    .filter(|t| !t.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default())
    }

    fn remember_consent(
        &self,
        subject: &str,
        client_id: &str,
        scopes: &[String],
        now: i64,
    ) -> Result<()> {
        let mut all = self.remembered_consent(subject, client_id)?;
        for s in scopes {
            if !all.contains(s) {
                all.push(s.clone());
            }
        }
        self.conn()
            .execute(
                "INSERT INTO consents (subject, client_id, scopes, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (subject, client_id) DO UPDATE SET scopes = ?3, updated_at = ?4",
                params![subject, client_id, all.join(" "), now],
            )
            .map_err(db)?;
        Ok(())
    }

    fn purge_expired_flows(&self, now: i64) -> Result<()> {
        let conn = self.conn();
        for sql in [
            "DELETE FROM auth_codes WHERE expires_at < ?1",
            "DELETE FROM refresh_tokens WHERE expires_at < ?1",
            "DELETE FROM revoked_access_tokens WHERE expires_at < ?1",
        ] {
            conn.execute(sql, [now]).map_err(db)?;
        }
        // A link is useless once its token expired (issued_tokens is purged the same way).
        conn.execute(
            "DELETE FROM grant_access_tokens WHERE jti NOT IN (SELECT jti FROM issued_tokens)",
            [],
        )
        .map_err(db)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> SqliteStorage {
        let s = SqliteStorage::in_memory().unwrap();
        s.insert_grant(&GrantRecord {
            id: "g1".into(),
            client_id: "c".into(),
            subject: "bob".into(),
            scope: "demo".into(),
            created_at: 1,
        })
        .unwrap();
        s
    }

    fn code(hash: &str) -> CodeRecord {
        CodeRecord {
            code_hash: hash.into(),
            grant_id: "g1".into(),
            client_id: "c".into(),
            redirect_uri: "https://c/cb".into(),
            subject: "bob".into(),
            scope: "demo".into(),
            code_challenge: Some("x".into()),
            expires_at: 60,
        }
    }

    fn refresh(hash: &str) -> RefreshRecord {
        RefreshRecord {
            token_hash: hash.into(),
            grant_id: "g1".into(),
            client_id: "c".into(),
            subject: "bob".into(),
            scope: "demo".into(),
            issued_at: 1,
            expires_at: 100,
        }
    }

    #[test]
    fn a_code_is_fresh_once_then_reused() {
        let s = store();
        s.insert_code(&code("h")).unwrap();
        assert_eq!(s.consume_code("h", 5).unwrap(), CodeUse::Fresh(code("h")));
        assert_eq!(
            s.consume_code("h", 6).unwrap(),
            CodeUse::Reused {
                grant_id: "g1".into()
            }
        );
        assert_eq!(s.consume_code("other", 6).unwrap(), CodeUse::Unknown);
    }

    #[test]
    fn refresh_rotation_and_grant_revocation() {
        let s = store();
        s.insert_refresh(&refresh("r1")).unwrap();
        assert_eq!(
            s.consume_refresh("r1", 2).unwrap(),
            RefreshUse::Fresh(refresh("r1"))
        );
        assert!(matches!(
            s.consume_refresh("r1", 3).unwrap(),
            RefreshUse::Reused { .. }
        ));
        s.insert_refresh(&refresh("r2")).unwrap();
        s.link_access_token("j1", "g1").unwrap();
        assert!(!s.access_token_revoked("j1").unwrap());
        assert!(!s.grant_revoked("g1").unwrap());
        s.revoke_grant("g1", 4).unwrap();
        assert!(s.grant_revoked("g1").unwrap());
        assert!(s.access_token_revoked("j1").unwrap());
        assert!(matches!(
            s.consume_refresh("r2", 5).unwrap(),
            RefreshUse::Revoked { .. }
        ));
        let st = s.refresh_state("r2").unwrap().unwrap();
        assert!(st.revoked && !st.used);
        assert!(s.grant_revoked("unknown").unwrap());
    }

    #[test]
    fn single_access_token_revocation_and_purge() {
        let s = store();
        s.revoke_access_token("j2", 50).unwrap();
        assert!(s.access_token_revoked("j2").unwrap());
        assert!(!s.access_token_revoked("j3").unwrap());
        s.purge_expired_flows(51).unwrap();
        assert!(!s.access_token_revoked("j2").unwrap());
    }

    #[test]
    fn consent_accumulates_scopes_per_pair() {
        let s = store();
        assert!(s.remembered_consent("bob", "c").unwrap().is_empty());
        s.remember_consent("bob", "c", &["demo".into()], 1).unwrap();
        s.remember_consent("bob", "c", &["read".into(), "demo".into()], 2)
            .unwrap();
        assert_eq!(
            s.remembered_consent("bob", "c").unwrap(),
            vec!["demo", "read"]
        );
        assert!(s.remembered_consent("bob", "other").unwrap().is_empty());
    }
}

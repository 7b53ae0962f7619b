//! The queries of a rotating refresh use indexes, so a refresh does not slow down as its session
//! ages (BENCHMARKS.md: rotating refreshes after 1,500 rotations). The benchmark measures it;
//! this test keeps a dropped index or a rewritten query from bringing the scan back unseen. The
//! same for a user's sign-outs and the session check of every access token (#25).

mod common;

use sessionkit_server::store::sqlite::Db;

/// SQLite's plan for `sql`, one detail line per step.
fn plan(db: &Db, sql: &str) -> String {
    let sql = format!("EXPLAIN QUERY PLAN {sql}");
    db.call_sync(move |conn| {
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(3))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?.join("\n"))
    })
    .unwrap()
}

#[test]
fn a_rotating_refresh_finds_the_current_and_newest_superseded_token_by_index() {
    let dir = common::temp_dir("plans");
    let db = Db::open(&dir).unwrap();
    let cases = [
        // Supersede the current token (record_refresh).
        (
            "UPDATE refresh_tokens SET superseded_at = 1 WHERE session_id = 's' AND superseded_at IS NULL",
            "refresh_tokens_superseded",
        ),
        // A rotated-out token's successors: whether one is current and was never presented
        // (a lost answer), and the one to answer again (successors).
        (
            "SELECT token_hash, issued_at, superseded_at IS NULL AND used_at IS NULL FROM refresh_tokens WHERE session_id = 's' AND generation = 1 + 1",
            "refresh_tokens_superseded",
        ),
        // The sessions of a deleted or disabled API key (the index leaves out the sessions
        // that did not log in with one).
        (
            "UPDATE sessions SET revoked = 1 WHERE api_key_id = 'k'",
            "sessions_api_key",
        ),
        // The queued mails of an address's older sign-in codes, erased when a new code is
        // sent (the queue keeps 30 days of sent mail).
        (
            "UPDATE outbox SET token = '' WHERE app_id = 'a' AND email = 'e' AND kind = 'email-otp' AND token != ''",
            "outbox_codes",
        ),
        // A page of an export (store export_users): a range of the id index, not every user
        // of the app sorted for each page.
        (
            "SELECT id FROM users WHERE +app_id = 'a' AND id > 'x' ORDER BY id LIMIT 500",
            "sqlite_autoindex_users_1 (id>?)",
        ),
        // #25: a user's sign-outs (one session, other devices, everywhere) and their list are
        // a few rows found by the user's index, and the check of every access token is a
        // primary-key lookup: a flood of revocations never scans what logins write.
        (
            "UPDATE sessions SET revoked = 1 WHERE app_id = 'a' AND user_id = 'u' AND revoked = 0 AND id IS NOT 's'",
            "sessions_user",
        ),
        (
            "UPDATE sessions SET revoked = 1 WHERE id = 's' AND app_id = 'a' AND user_id = 'u' AND revoked = 0 AND expires_at > 1",
            "sqlite_autoindex_sessions_1",
        ),
        (
            "SELECT s.id, k.name FROM sessions s LEFT JOIN api_keys k ON k.id = s.api_key_id WHERE s.app_id = 'a' AND s.user_id = 'u' AND s.revoked = 0 AND s.expires_at > 1 ORDER BY s.created_at, s.id",
            "sessions_user",
        ),
        (
            "SELECT 1 FROM sessions WHERE id = 's' AND revoked = 0 AND expires_at > 1",
            "sqlite_autoindex_sessions_1",
        ),
    ];
    for (sql, index) in cases {
        let p = plan(&db, sql);
        assert!(p.contains(index) && !p.contains("SCAN"), "{sql}\nplan: {p}");
    }
}

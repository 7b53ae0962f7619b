//! Exporting users (#24): `sessionkit-server export` writes an app's users in the line format
//! that `import` reads (docs/SERVER.md, "Importing users" and "Exporting users"), so that an
//! export imported into an empty server gives the same users, with the same ids, who log in
//! with the same passwords.
//!
//! The export pages through the users by id ([`crate::store::Store::export_users`], [`PAGE`]
//! users a page) and writes each page before reading the next: memory stays bounded whatever
//! the number of users. Password hashes are written as the import takes them: the server's own
//! argon2id hashes are PHC strings already; an imported hash not yet replaced at a login is
//! written in its stored form, which the import parses back to the same hash (a Firebase hash
//! as its `$firebase-scrypt$` string, which carries the project's parameters); an account with
//! no password gets `"must_reset": true`.
//!
//! What a line cannot bring is left out and counted ([`Summary`]): anonymous users (an
//! anonymous user is one device's session), API key identities (keys are stored hashed: their
//! owners make new ones), and an email identity whose account is gone.

use std::io::Write;
use std::path::Path;

use serde_json::{Map, Value, json};

use crate::import::USERPASS;
use crate::passwords::{LEGACY_MARK, MUST_RESET_MARK};
use crate::store::{ExportUser, Store};

/// Users read (and written) per page.
pub const PAGE: usize = 500;

/// What an export wrote and left out.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    /// Lines written (users).
    pub users: u64,
    /// Anonymous users left out.
    pub anonymous_left_out: u64,
    /// API key identities left out (their users are written).
    pub api_keys_left_out: u64,
    /// Email identities left out because their email account is gone.
    pub accounts_missing: u64,
}

impl Summary {
    /// `exported N users` and what was left out, for the command's output.
    pub fn text(&self) -> String {
        let mut text = format!("exported {} users", self.users);
        if self.anonymous_left_out > 0 {
            text.push_str(&format!(
                "; left out {} anonymous users (an anonymous user is one device's session)",
                self.anonymous_left_out
            ));
        }
        if self.api_keys_left_out > 0 {
            text.push_str(&format!(
                "; left out {} API key identities (keys are stored hashed: their owners make \
                 new keys)",
                self.api_keys_left_out
            ));
        }
        if self.accounts_missing > 0 {
            text.push_str(&format!(
                "; left out {} {USERPASS} identities whose email account is gone",
                self.accounts_missing
            ));
        }
        text
    }
}

/// The line of one user, or `None` when it is left out (anonymous); counts what it leaves out
/// in `summary`.
pub fn line(u: &ExportUser, summary: &mut Summary) -> Option<Value> {
    let mut identities = Vec::with_capacity(u.identities.len());
    let mut anonymous = u.user.anonymous;
    for ident in &u.identities {
        match ident.provider_type.as_str() {
            "anon-user" => {
                anonymous = true;
                continue;
            }
            "api-key" => {
                summary.api_keys_left_out += 1;
                continue;
            }
            _ => {}
        }
        let mut out = Map::new();
        out.insert("provider_type".into(), json!(ident.provider_type));
        out.insert("id".into(), json!(ident.external_id));
        if ident.provider_type == USERPASS {
            let account = u
                .account
                .as_ref()
                .filter(|a| a.identity_id == ident.external_id);
            let Some(account) = account else {
                summary.accounts_missing += 1;
                continue;
            };
            // The import takes the account's email (canonical) as the whole profile.
            out.insert("profile_data".into(), json!({ "email": account.email }));
            let column = account.password_hash.as_str();
            if column == MUST_RESET_MARK {
                out.insert("must_reset".into(), json!(true));
            } else {
                let hash = column.strip_prefix(LEGACY_MARK).unwrap_or(column);
                out.insert("password_hash".into(), json!(hash));
            }
        } else {
            out.insert("profile_data".into(), Value::Object(ident.data.clone()));
        }
        identities.push(Value::Object(out));
    }
    // A user that is anonymous and has nothing else to log in with is one device's session.
    if anonymous && identities.is_empty() {
        summary.anonymous_left_out += 1;
        return None;
    }
    summary.users += 1;
    Some(json!({
        "id": u.user.id,
        "disabled": u.user.disabled,
        "custom_data": u.user.custom_data,
        "created_at": u.user.created_at,
        "identities": identities,
    }))
}

/// Writes every user of `app_id` to `out`, one line each, page by page. Errors: the store's
/// (a database error) or the output's, as a message.
pub async fn run(store: &dyn Store, app_id: &str, out: &mut dyn Write) -> Result<Summary, String> {
    let mut summary = Summary::default();
    let mut after: Option<String> = None;
    loop {
        let page = store
            .export_users(app_id, after.as_deref(), PAGE)
            .await
            .map_err(|e| {
                format!(
                    "export stopped after {} users: {}",
                    summary.users, e.message
                )
            })?;
        let Some(last) = page.last() else { break };
        after = Some(last.user.id.clone());
        let full = page.len() == PAGE;
        for u in &page {
            if let Some(v) = line(u, &mut summary) {
                serde_json::to_writer(&mut *out, &v)
                    .map_err(|e| e.to_string())
                    .and_then(|()| out.write_all(b"\n").map_err(|e| e.to_string()))
                    .map_err(|e| format!("cannot write the export: {e}"))?;
            }
        }
        if !full {
            break;
        }
    }
    out.flush()
        .map_err(|e| format!("cannot write the export: {e}"))?;
    Ok(summary)
}

/// Exports to `file` atomically: into a temporary file next to it (mode 0600: it holds
/// password hashes), synced, then moved into place; without `force`, only if `file` does not
/// exist. The temporary file is removed on failure.
pub async fn to_file(
    store: &dyn Store,
    app_id: &str,
    file: &Path,
    force: bool,
) -> Result<Summary, String> {
    use crate::backup::{create_private, place, sync, temp_name};
    if !force && file.exists() {
        return Err(format!(
            "{} exists: name a new file, or pass --force to replace it",
            file.display()
        ));
    }
    let tmp = temp_name(file);
    let result = async {
        create_private(&tmp)?;
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&tmp)
            .map_err(|e| format!("cannot open {}: {e}", tmp.display()))?;
        let mut w = std::io::BufWriter::new(f);
        let summary = run(store, app_id, &mut w).await?;
        drop(w);
        sync(&tmp)?;
        place(&tmp, file, force)?;
        Ok(summary)
    }
    .await;
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

//! What importing one user writes (#24), decided once for both back ends: the imported user
//! ([`ImportUser`], parsed by `crate::import` from the line format of docs/SERVER.md,
//! "Importing users"), what the store found for it ([`Existing`], read in the line's
//! transaction), and [`plan`], which decides (created, updated, unchanged, or refused with the
//! reason) and lists the [`Write`]s that the store then makes. SQLite and PostgreSQL only read
//! and write.

use serde_json::{Map, Value};

use crate::passwords::StoredPassword;
use crate::store::transaction::{RowLock, Transaction};
use crate::store::{IdentityRow, StoreResult, UserRow, UserpassRow};

/// The provider type of email/password identities.
pub const USERPASS: &str = "local-userpass";

/// One user of an import, parsed and checked.
#[derive(Debug, Clone)]
pub struct ImportUser {
    /// The user id to keep (an App Services ObjectId, or another system's id as given).
    pub id: String,
    /// Disabled; `None`: keep what is stored (a new user is enabled).
    pub disabled: Option<bool>,
    /// Custom user data: `None` keeps what is stored, `Some(None)` clears it.
    pub custom_data: Option<Option<Map<String, Value>>>,
    /// Creation time (Unix seconds); `None` keeps what is stored (a new user: the import's
    /// time).
    pub created_at: Option<i64>,
    /// The identities, each at most once.
    pub identities: Vec<ImportIdentity>,
}

/// One identity of an imported user.
#[derive(Debug, Clone)]
pub struct ImportIdentity {
    /// Provider type, e.g. `local-userpass`, `oauth2-google`, `custom-token`.
    pub provider_type: String,
    /// The id within the provider (the subject a later login presents).
    pub external_id: String,
    /// Profile data; `None` keeps what is stored (a new identity: none).
    pub data: Option<Map<String, Value>>,
    /// The email/password account of a `local-userpass` identity.
    pub account: Option<ImportAccount>,
}

/// The email/password account a `local-userpass` identity brings. `Debug` leaves the password
/// hash out.
#[derive(Clone)]
pub struct ImportAccount {
    /// The email, canonical (email.rs).
    pub email: String,
    /// What goes in the account's password column ([`StoredPassword::to_column`]): a legacy
    /// hash, or the mark of an account that must reset its password.
    pub password: String,
}

impl std::fmt::Debug for ImportAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ImportAccount")
            .field("email", &self.email)
            .finish_non_exhaustive()
    }
}

/// What importing a line did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Imported {
    /// A new user.
    Created,
    /// An existing user (same id) changed.
    Updated,
    /// An existing user that already was as the line says.
    Unchanged,
}

/// What a store found for a line, read in the line's transaction (PostgreSQL: locked).
#[derive(Debug, Default)]
pub struct Existing {
    /// The user with the line's id, in any app.
    pub user: Option<UserRow>,
    /// That user's identities.
    pub identities: Vec<IdentityRow>,
    /// The owner of each of the line's identities, in the line's order.
    pub owners: Vec<Option<String>>,
    /// The account of the line's email (if it has a `local-userpass` identity), with the
    /// owner of that account's identity.
    pub account: Option<(UserpassRow, Option<String>)>,
    /// The account of the email the user's `local-userpass` identity had until now, when the
    /// line gives it another ([`previous_email`]).
    pub previous_account: Option<UserpassRow>,
}

/// One write of a plan, in order.
#[derive(Debug, Clone)]
pub enum Write {
    /// Deletes the email account of `email` (the identity's email changed).
    DeleteAccount {
        /// Its email.
        email: String,
    },
    /// Inserts the user.
    InsertUser {
        /// Unix seconds.
        created_at: i64,
        /// Disabled.
        disabled: bool,
        /// Custom data, JSON text.
        custom_data: Option<String>,
    },
    /// Updates the user (no longer anonymous).
    UpdateUser {
        /// Unix seconds.
        created_at: i64,
        /// Disabled.
        disabled: bool,
        /// Custom data, JSON text.
        custom_data: Option<String>,
    },
    /// Ends the user's sessions (it is disabled now).
    RevokeSessions,
    /// Inserts an identity of the user; a store refuses the line if another user took it
    /// meanwhile.
    InsertIdentity {
        /// Provider type.
        provider_type: String,
        /// Id within the provider.
        external_id: String,
        /// Profile data.
        data: Map<String, Value>,
    },
    /// Replaces the profile data of an identity of the user.
    UpdateIdentity {
        /// Provider type.
        provider_type: String,
        /// Id within the provider.
        external_id: String,
        /// Profile data.
        data: Map<String, Value>,
    },
    /// Inserts a confirmed email account; a store refuses the line if the email was taken
    /// meanwhile.
    InsertAccount {
        /// Email (canonical).
        email: String,
        /// The `local-userpass` identity id.
        identity_id: String,
        /// The password column ([`StoredPassword`]).
        password: String,
    },
    /// Sets an account's password column and confirms it.
    UpdateAccount {
        /// Email.
        email: String,
        /// The password column.
        password: String,
    },
}

/// What a line does: the result to report and the writes to make.
#[derive(Debug)]
pub struct Plan {
    /// Created, updated or unchanged.
    pub outcome: Imported,
    /// The writes, in order.
    pub writes: Vec<Write>,
}

/// The email the user's `local-userpass` identity of the line had until now, when the line
/// gives that identity another one: its account is moved to the new email.
pub fn previous_email(user: &ImportUser, stored: &[IdentityRow]) -> Option<String> {
    let ident = user.identities.iter().find(|i| i.account.is_some())?;
    let email = &ident.account.as_ref()?.email;
    stored
        .iter()
        .find(|s| s.provider_type == USERPASS && s.external_id == ident.external_id)
        .and_then(|s| s.data.get("email")?.as_str().map(str::to_string))
        .filter(|old| old != email)
}

/// Decides what line `user` does to app `app_id`, given what is stored: the plan, or why the
/// line is refused (it would give an email or an identity of another user to this one, or its
/// id is a user of another app).
pub fn plan(app_id: &str, user: &ImportUser, found: &Existing, now: i64) -> Result<Plan, String> {
    let id = &user.id;
    let mut writes = Vec::new();
    let mut changed = false;
    if let Some(u) = &found.user
        && u.app_id != app_id
    {
        return Err(format!("id {id} is a user of another app"));
    }
    for (ident, owner) in user.identities.iter().zip(&found.owners) {
        if let Some(o) = owner
            && o != id
        {
            return Err(format!(
                "{} identity {} belongs to another user ({o})",
                ident.provider_type, ident.external_id
            ));
        }
    }
    let ident = user.identities.iter().find(|i| i.account.is_some());
    if let (Some(ident), Some((row, owner))) = (ident, &found.account)
        && row.identity_id != ident.external_id
    {
        let whose = match owner {
            Some(o) => format!("user {o}"),
            None => "an account that has not logged in yet".into(),
        };
        return Err(format!(
            "email {} is already the email/password account of {whose}",
            row.email
        ));
    }
    let custom = |c: &Option<Map<String, Value>>| c.as_ref().map(|m| Value::Object(m.clone()));
    match &found.user {
        None => {
            writes.push(Write::InsertUser {
                created_at: user.created_at.unwrap_or(now),
                disabled: user.disabled.unwrap_or(false),
                custom_data: user
                    .custom_data
                    .as_ref()
                    .and_then(custom)
                    .map(|v| v.to_string()),
            });
        }
        Some(u) => {
            let created_at = user.created_at.unwrap_or(u.created_at);
            let disabled = user.disabled.unwrap_or(u.disabled);
            let custom_data = match &user.custom_data {
                None => u.custom_data.clone(),
                Some(c) => custom(c),
            };
            if created_at != u.created_at
                || disabled != u.disabled
                || custom_data != u.custom_data
                || u.anonymous
            {
                changed = true;
                writes.push(Write::UpdateUser {
                    created_at,
                    disabled,
                    custom_data: custom_data.map(|v| v.to_string()),
                });
                if disabled && !u.disabled {
                    writes.push(Write::RevokeSessions);
                }
            }
        }
    }
    for (ident, owner) in user.identities.iter().zip(&found.owners) {
        let stored = found
            .identities
            .iter()
            .find(|s| s.provider_type == ident.provider_type && s.external_id == ident.external_id);
        match (owner, stored) {
            (Some(_), Some(s)) => {
                if let Some(data) = &ident.data
                    && *data != s.data
                {
                    changed = true;
                    writes.push(Write::UpdateIdentity {
                        provider_type: ident.provider_type.clone(),
                        external_id: ident.external_id.clone(),
                        data: data.clone(),
                    });
                }
            }
            _ => {
                changed = true;
                writes.push(Write::InsertIdentity {
                    provider_type: ident.provider_type.clone(),
                    external_id: ident.external_id.clone(),
                    data: ident.data.clone().unwrap_or_default(),
                });
            }
        }
    }
    if let Some(ident) = ident
        && let Some(account) = &ident.account
    {
        match &found.account {
            None => {
                if let Some(prev) = &found.previous_account
                    && prev.identity_id == ident.external_id
                {
                    writes.insert(
                        0,
                        Write::DeleteAccount {
                            email: prev.email.clone(),
                        },
                    );
                }
                changed = true;
                writes.push(Write::InsertAccount {
                    email: account.email.clone(),
                    identity_id: ident.external_id.clone(),
                    password: account.password.clone(),
                });
            }
            Some((row, _)) => {
                // A password set or upgraded here is newer than the export's: a re-import
                // leaves it. An imported one not used yet is replaced by the line's.
                let imported = !matches!(
                    StoredPassword::of(&row.password_hash),
                    StoredPassword::Own(_)
                );
                if (imported && row.password_hash != account.password) || !row.confirmed {
                    changed = true;
                    let password = if imported {
                        account.password.clone()
                    } else {
                        row.password_hash.clone()
                    };
                    writes.push(Write::UpdateAccount {
                        email: row.email.clone(),
                        password,
                    });
                }
            }
        }
    }
    let outcome = match (&found.user, changed) {
        (None, _) => Imported::Created,
        (Some(_), true) => Imported::Updated,
        (Some(_), false) => Imported::Unchanged,
    };
    Ok(Plan { outcome, writes })
}

// ---- Running a batch (CLI and admin API) ----

/// Imports line `u` into app `app_id` in `t`: serializes it with other imports of the same
/// user id, email or identities ([`Transaction::lock_import`]), reads what is stored (the email
/// account locked as a password change locks it, then the user), lets [`plan`] decide, and
/// makes the plan's writes. `Ok(Err(reason))`: refused (the caller rolls the line back).
pub(crate) async fn import_line<T: Transaction>(
    t: &mut T,
    app_id: &str,
    u: &ImportUser,
    now: i64,
) -> StoreResult<Result<Imported, String>> {
    let email = u
        .identities
        .iter()
        .find_map(|i| i.account.as_ref())
        .map(|a| a.email.as_str());
    // A user id is unique across apps: its name has no app.
    let names: Vec<String> = u
        .identities
        .iter()
        .map(|i| {
            format!(
                "import/{app_id}/identity/{}/{}",
                i.provider_type, i.external_id
            )
        })
        .chain(std::iter::once(format!("import//user/{}", u.id)))
        .chain(email.iter().map(|e| format!("import/{app_id}/email/{e}")))
        .collect();
    t.lock_import(&names).await?;
    let account = match email {
        Some(e) => match t.account(app_id, e, RowLock::Update).await? {
            Some(row) => {
                let owner = t.identity_owner(app_id, USERPASS, &row.identity_id).await?;
                Some((row, owner))
            }
            None => None,
        },
        None => None,
    };
    let user = t.user_any_app(&u.id).await?;
    let stored = match &user {
        Some(_) => t.identities(&u.id).await?,
        None => Vec::new(),
    };
    let mut owners = Vec::with_capacity(u.identities.len());
    for i in &u.identities {
        owners.push(
            t.identity_owner(app_id, &i.provider_type, &i.external_id)
                .await?,
        );
    }
    let previous_account = match previous_email(u, &stored) {
        Some(e) => t.account(app_id, &e, RowLock::Update).await?,
        None => None,
    };
    let found = Existing {
        user,
        identities: stored,
        owners,
        account,
        previous_account,
    };
    let plan = match plan(app_id, u, &found, now) {
        Ok(p) => p,
        Err(reason) => return Ok(Err(reason)),
    };
    for write in &plan.writes {
        if t.import_write(app_id, &u.id, write, now).await? {
            continue;
        }
        // An insert that found its row taken: another import or login came between
        // (PostgreSQL, on another instance), or the id is a user of another app.
        return Ok(Err(match write {
            Write::InsertIdentity {
                provider_type,
                external_id,
                ..
            } => format!("{provider_type} identity {external_id} belongs to another user"),
            Write::InsertAccount { email, .. } => {
                format!("email {email} is already the email/password account of another user")
            }
            _ => format!("id {} is a user of another app", u.id),
        }));
    }
    Ok(Ok(plan.outcome))
}

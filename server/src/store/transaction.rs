//! One write transaction of a store, in the server's terms (#28): the reads and writes that
//! the store's decisions are made of, and nothing else. What a login, a refresh (its rotation,
//! a reuse, the grace window), an import or a deletion means is written once, over this trait,
//! in [`super::login`], [`super::refresh`], [`super::import`], [`super::users`],
//! [`super::accounts`] and [`super::api_keys`];
//! `sqlite.rs` and `postgres.rs` implement it with their SQL.
//!
//! Locks: what a method's doc calls "locked" is held until the end of the transaction on
//! PostgreSQL (a row lock or an advisory lock), so that a change on another instance cannot
//! come between a decision and its writes; SQLite's one writer runs one transaction at a time,
//! so nothing can come between, and its methods take no lock.
//!
//! Every method's error is a database failure: the caller rolls back. Refusals are the flows'
//! own (`Ok(Err(..))`: refused with the writes so far kept, i.e. committed).

use serde_json::{Map, Value};

use super::import::Write;
use super::{
    ApiKeyRow, IdentityRow, MailToken, NewSession, PresentedRefresh, PresentedToken, SessionRow,
    StoreResult, StoredCode, Successor, UserRow, UserpassRow,
};
use crate::audit::Event;

/// How a read of an email account locks it (PostgreSQL; SQLite takes no lock).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowLock {
    /// A plain read.
    None,
    /// `FOR UPDATE`: the account is about to change (an import, a new mail token, a new
    /// password).
    Update,
    /// `FOR SHARE`: a login's check that the account is still there, which holds off a
    /// deletion or a password change until the login's session is written.
    Share,
}

/// How a user row is locked by [`Transaction::lock_user`] (PostgreSQL; SQLite takes no lock).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserLock {
    /// `FOR NO KEY UPDATE`: a login holds off a deletion and other logins' updates, while
    /// sessions' foreign keys to the user still go through; two logins of one user queue
    /// instead of deadlocking on a lock upgrade.
    Login,
    /// `FOR UPDATE`: the user row itself is about to change (disabled, custom data, its
    /// sessions revoked).
    Change,
}

/// The presented refresh token's row and its session's, as [`Transaction::token_session`]
/// finds them.
pub struct TokenSession {
    /// The session (its row locked).
    pub session: SessionRow,
    /// What is stored of the presented token.
    pub token: PresentedToken,
    /// Where the session's next pruning starts: the newest generation already pruned
    /// (PostgreSQL's migration 0002); 0 where the store does not keep it.
    pub prune_from: i64,
}

/// The reads and writes of one write transaction. See the module doc for locks and errors.
pub(crate) trait Transaction {
    /// The user `user_id` of app `app_id`.
    async fn user(&mut self, app_id: &str, user_id: &str) -> StoreResult<Option<UserRow>>;

    /// The user with this id in any app (ids are unique across apps), locked `FOR UPDATE`.
    async fn user_any_app(&mut self, user_id: &str) -> StoreResult<Option<UserRow>>;

    /// Locks the user of the app as `lock` says; whether it exists (after waiting for a
    /// deletion in progress).
    async fn lock_user(&mut self, app_id: &str, user_id: &str, lock: UserLock)
    -> StoreResult<bool>;

    /// Creates a user (a new object id) whose creation and last login are `now`; its id.
    async fn create_user(&mut self, app_id: &str, now: i64, anonymous: bool)
    -> StoreResult<String>;

    /// Marks a user as no longer anonymous (an identity was linked to it).
    async fn set_not_anonymous(&mut self, user_id: &str) -> StoreResult<()>;

    /// Deletes a user this transaction created and no longer needs (it lost a race for its
    /// identity).
    async fn drop_created_user(&mut self, user_id: &str) -> StoreResult<()>;

    /// Sets the user's last login to `now`; the user as it is then, `None` when it is gone.
    /// PostgreSQL: the row is locked, so a disable committed on another instance is seen.
    async fn record_login(
        &mut self,
        app_id: &str,
        user_id: &str,
        now: i64,
    ) -> StoreResult<Option<UserRow>>;

    /// Sets whether the user is disabled.
    async fn set_disabled(&mut self, user_id: &str, disabled: bool) -> StoreResult<()>;

    /// Replaces the user's custom data (a JSON document).
    async fn set_custom_data(&mut self, user_id: &str, doc: &str) -> StoreResult<()>;

    /// Revokes every live session of the user; how many.
    async fn revoke_user_sessions(&mut self, user_id: &str) -> StoreResult<u64>;

    /// Deletes the user with what it owns: its email accounts and their mail tokens (keyed by
    /// email, not user), and by cascade its identities, sessions, refresh tokens and API keys.
    /// Whether it existed.
    async fn delete_user(&mut self, app_id: &str, user_id: &str) -> StoreResult<bool>;

    /// The owner of an identity.
    async fn identity_owner(
        &mut self,
        app_id: &str,
        provider_type: &str,
        external_id: &str,
    ) -> StoreResult<Option<String>>;

    /// Inserts an identity for `user_id`, or, when the identity exists (whoever owns it),
    /// updates its profile data: merged or replaced, see [`super::merges_profile_data`].
    /// PostgreSQL: an insert racing another instance's waits for it, then updates.
    #[allow(clippy::too_many_arguments)]
    async fn upsert_identity(
        &mut self,
        app_id: &str,
        provider_type: &str,
        external_id: &str,
        user_id: &str,
        data: &Map<String, Value>,
        now: i64,
    ) -> StoreResult<()>;

    /// The user's identities, oldest first.
    async fn identities(&mut self, user_id: &str) -> StoreResult<Vec<IdentityRow>>;

    /// The email account of `email` (canonical), locked as `lock` says.
    async fn account(
        &mut self,
        app_id: &str,
        email: &str,
        lock: RowLock,
    ) -> StoreResult<Option<UserpassRow>>;

    /// Whether API key `key_id` of `user_id` is disabled, `None` when there is no such key;
    /// locked `FOR SHARE` (its deletion waits for the login).
    async fn api_key_disabled(
        &mut self,
        app_id: &str,
        key_id: &str,
        user_id: &str,
    ) -> StoreResult<Option<bool>>;

    /// The address's live sign-in code, locked `FOR UPDATE` (two logins with one code take
    /// turns).
    async fn email_code(&mut self, app_id: &str, email: &str) -> StoreResult<Option<StoredCode>>;

    /// Sets the wrong attempts the address's code has left.
    async fn set_code_attempts(&mut self, app_id: &str, email: &str, left: i64) -> StoreResult<()>;

    /// Deletes the address's code (used, void, or expired).
    async fn delete_code(&mut self, app_id: &str, email: &str) -> StoreResult<()>;

    /// Stores a new email account, its identity id `identity_id` (the `local-userpass`
    /// identity a first login makes). Whether it was stored: `false` when the address has an
    /// account (the unique key decides, on every instance).
    #[allow(clippy::too_many_arguments)]
    async fn insert_account(
        &mut self,
        app_id: &str,
        email: &str,
        identity_id: &str,
        password_hash: &str,
        confirmed: bool,
        now: i64,
    ) -> StoreResult<bool>;

    /// Marks the account of `email` confirmed.
    async fn set_confirmed(&mut self, app_id: &str, email: &str) -> StoreResult<()>;

    /// Sets the password hash of the account of `email`.
    async fn set_account_password(
        &mut self,
        app_id: &str,
        email: &str,
        password_hash: &str,
    ) -> StoreResult<()>;

    /// Stores a mail token's hash and queues its mail (the outbox holds the token until sent).
    async fn store_mail_token(
        &mut self,
        app_id: &str,
        email: &str,
        token: &MailToken,
    ) -> StoreResult<()>;

    /// Consumes a matching unexpired mail token of `kind` (one statement: of two instances
    /// presented the same token, exactly one gets it); its email, `None` when none matches.
    async fn take_mail_token(
        &mut self,
        app_id: &str,
        kind: &str,
        token: &str,
        token_id: &str,
        now: i64,
    ) -> StoreResult<Option<String>>;

    /// Deletes the mail tokens of `kind` of the account of `email`.
    async fn delete_mail_tokens(
        &mut self,
        app_id: &str,
        email: &str,
        kind: &str,
    ) -> StoreResult<()>;

    /// Stores an API key (its hash) for `user_id`. Whether it was stored: `false` when the
    /// user has a key of that name (the unique key decides).
    async fn insert_api_key(
        &mut self,
        app_id: &str,
        user_id: &str,
        key: &ApiKeyRow,
        key_hash: &str,
        now: i64,
    ) -> StoreResult<bool>;

    /// Deletes API key `id` of `user_id`; its app, `None` when there is no such key.
    async fn delete_api_key(&mut self, user_id: &str, id: &str) -> StoreResult<Option<String>>;

    /// Sets whether API key `id` of `user_id` is disabled; its app, `None` when there is no
    /// such key.
    async fn set_api_key_disabled(
        &mut self,
        user_id: &str,
        id: &str,
        disabled: bool,
    ) -> StoreResult<Option<String>>;

    /// Revokes the live sessions that logged in with API key `id`; how many.
    async fn revoke_api_key_sessions(&mut self, id: &str) -> StoreResult<u64>;

    /// Deletes an identity of `user_id`.
    async fn delete_identity(
        &mut self,
        user_id: &str,
        provider_type: &str,
        external_id: &str,
    ) -> StoreResult<()>;

    /// Stores a new session with its first refresh token (its hash), at `now`.
    async fn insert_session(
        &mut self,
        app_id: &str,
        user_id: &str,
        session: &NewSession,
        now: i64,
    ) -> StoreResult<()>;

    /// The session of a refresh token hash, the session row locked `FOR UPDATE` (two uses of
    /// one session take turns; the second judges what the first committed).
    async fn token_session(&mut self, token_hash: &str) -> StoreResult<Option<TokenSession>>;

    /// The session's tokens of generation `generation + 1`: a rotated-out token's successor
    /// (and, from rotations before successors were derived, its siblings'). A token rotated
    /// out past the grace window still passes when one of them is current and was never
    /// presented: its client never received it (a lost answer), and the parent is still the
    /// client's latest token.
    async fn successors(
        &mut self,
        session_id: &str,
        generation: i64,
    ) -> StoreResult<Vec<Successor>>;

    /// Revokes session `session_id` of `user_id` in app `app_id` if it is not revoked and
    /// has not expired at `now`; whether it was.
    async fn revoke_live_session(
        &mut self,
        app_id: &str,
        user_id: &str,
        session_id: &str,
        now: i64,
    ) -> StoreResult<bool>;

    /// Revokes every live session of `user_id` in app `app_id` but `keep`; how many.
    async fn revoke_sessions_but(
        &mut self,
        app_id: &str,
        user_id: &str,
        keep: Option<&str>,
    ) -> StoreResult<u64>;

    /// The key session `session_id` is bound to: `None` when there is no such session,
    /// `Some(None)` when it is not bound.
    async fn session_jkt(&mut self, session_id: &str) -> StoreResult<Option<Option<String>>>;

    /// Binds session `session_id` to the key of thumbprint `jkt` (DPoP).
    async fn bind_session(&mut self, session_id: &str, jkt: &str) -> StoreResult<()>;

    /// Revokes the session of `user_id` if it is live; whether it was.
    async fn revoke_session(&mut self, session_id: &str, user_id: &str) -> StoreResult<bool>;

    /// Marks the presented token as seen by its client (from now on its parent counts as
    /// reused), once.
    async fn mark_used(&mut self, token_hash: &str, now: i64) -> StoreResult<()>;

    /// The writes of a refresh of `p`'s token (of `generation`) in session `session_id`:
    /// the token is marked as seen, the session as used at `p.now`; with `next` (the new
    /// token), the session's current token (a retried parent's old successor too) is
    /// superseded by it, stored as generation `generation + 1`, and the tokens older than the
    /// presented one and past the grace window are pruned, from generation `prune_from` on.
    /// With `only_if_first`, nothing rotates when the presented token already has a successor
    /// (rotated out by a use this one waited for). Whether `next` was stored.
    #[allow(clippy::too_many_arguments)]
    async fn refresh(
        &mut self,
        p: &PresentedRefresh,
        session_id: &str,
        generation: i64,
        prune_from: i64,
        next: Option<&str>,
        only_if_first: bool,
    ) -> StoreResult<bool>;

    /// Appends `event` to the audit log (audit.rs).
    async fn insert_event(&mut self, event: &Event) -> StoreResult<()>;

    /// Serializes the imports that name any of `names` (a user id, an email, an identity,
    /// each scoped by its app) until the end of the transaction, across instances; taken in
    /// one order, so two imports never wait on each other in a circle.
    async fn lock_import(&mut self, names: &[String]) -> StoreResult<()>;

    /// Makes one write of an import plan for user `user_id` (import.rs). Whether a row was
    /// written: `false` only for an insert whose row exists (another user's, or another
    /// app's), which the caller refuses.
    async fn import_write(
        &mut self,
        app_id: &str,
        user_id: &str,
        write: &Write,
        now: i64,
    ) -> StoreResult<bool>;
}

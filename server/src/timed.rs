//! A store that times every operation for `/metrics` (#26, "time per query kind"): each
//! [`Store`] method is one kind, so `login`, `use_refresh_token` or `session_live` show their
//! own latency and failures on either back end without either knowing. Wrapped around the
//! store only when metrics are on (`[metrics] enabled`), so a server without them pays
//! nothing.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;

use crate::metrics::Metrics;
use crate::store::{
    ApiKeyRow, CheckedSession, EmailOtpCode, ExportUser, IdentityRow, Login, MailOutcome, MailRow,
    MailToken, NewSession, OutboxRow, PasswordAccount, PresentedRefresh, QueuedMail, RefreshUse,
    SessionInfo, SharedStore, SigningKeyRow, StartSession, Store, StoreResult, StoreStats, UserRow,
    UserpassRow,
};

/// [`Store`] over another, timing each call into [`Metrics::database_operation`].
pub struct Timed {
    inner: SharedStore,
    metrics: Arc<Metrics>,
}

impl Timed {
    /// `inner`, its operations timed into `metrics`.
    pub fn wrap(inner: SharedStore, metrics: Arc<Metrics>) -> SharedStore {
        Arc::new(Timed { inner, metrics })
    }

    async fn time<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = StoreResult<T>>,
    ) -> StoreResult<T> {
        let started = Instant::now();
        let out = call.await;
        // A refusal the store decides (401, 404, 409) is an answer; a 5xx is the database's
        // failure (or a shutdown).
        let failed = out.as_ref().is_err_and(|e| e.status.is_server_error());
        self.metrics
            .database_operation(operation, failed, started.elapsed().as_secs_f64());
        out
    }
}

/// The impl of [`Store`] for [`Timed`]: each listed method calls the inner store's, timed
/// under its own name.
macro_rules! timed_store {
    ($( async fn $name:ident(&self $(, $arg:ident : $ty:ty)* $(,)?) -> $ret:ty; )*) => {
        #[async_trait]
        impl Store for Timed {
            fn backend(&self) -> &'static str {
                self.inner.backend()
            }
            fn stats(&self) -> StoreStats {
                self.inner.stats()
            }
            async fn close(&self) {
                self.inner.close().await
            }
            $(
                async fn $name(&self $(, $arg: $ty)*) -> $ret {
                    self.time(stringify!($name), self.inner.$name($($arg),*)).await
                }
            )*
        }
    };
}

timed_store! {
    async fn ping(&self) -> StoreResult<()>;
    async fn meta_get_or_insert(&self, key: &str, value: String) -> StoreResult<String>;
    async fn meta_get(&self, key: &str) -> StoreResult<Option<String>>;
    async fn meta_set(&self, key: &str, value: &str) -> StoreResult<()>;
    async fn meta_with_prefix(&self, prefix: &str) -> StoreResult<Vec<(String, String)>>;
    async fn signing_keys(&self, app_id: &str) -> StoreResult<Vec<SigningKeyRow>>;
    async fn add_signing_key(
        &self,
        app_id: &str,
        only_if_alg_differs: Option<&'static str>,
        make: Box<dyn FnOnce() -> Result<SigningKeyRow, String> + Send>,
        now: i64,
    ) -> StoreResult<bool>;
    async fn login(&self, login: Login, start: StartSession) -> StoreResult<(UserRow, NewSession)>;
    async fn import_users(
        &self,
        app_id: &str,
        users: Vec<crate::store::import::ImportUser>,
        dry_run: bool,
        now: i64,
    ) -> StoreResult<Vec<Result<crate::store::import::Imported, String>>>;
    async fn upgrade_password(
        &self,
        app_id: &str,
        email: &str,
        old: &str,
        new: &str,
    ) -> StoreResult<bool>;
    async fn user(&self, app_id: &str, user_id: &str) -> StoreResult<Option<UserRow>>;
    async fn identities(&self, user_id: &str) -> StoreResult<Vec<IdentityRow>>;
    async fn users(&self, app_id: &str) -> StoreResult<Vec<(UserRow, Vec<IdentityRow>)>>;
    async fn export_users(
        &self,
        app_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<ExportUser>>;
    async fn delete_user(&self, app_id: &str, user_id: &str) -> StoreResult<bool>;
    async fn revoke_sessions(&self, app_id: &str, user_id: &str) -> StoreResult<bool>;
    async fn user_sessions(
        &self,
        app_id: &str,
        user_id: &str,
        now: i64,
    ) -> StoreResult<Vec<SessionInfo>>;
    async fn revoke_user_session(
        &self,
        app_id: &str,
        user_id: &str,
        session_id: &str,
        now: i64,
    ) -> StoreResult<bool>;
    async fn revoke_sessions_but(
        &self,
        app_id: &str,
        user_id: &str,
        keep: Option<&str>,
    ) -> StoreResult<usize>;
    async fn session_live(&self, session_id: &str, now: i64) -> StoreResult<bool>;
    async fn remember_proof(&self, replay_key: &str, until: i64) -> StoreResult<bool>;
    async fn set_user_disabled(
        &self,
        app_id: &str,
        user_id: &str,
        disabled: bool,
    ) -> StoreResult<bool>;
    async fn set_custom_data(&self, app_id: &str, user_id: &str, doc: &str) -> StoreResult<bool>;
    async fn use_refresh_token(
        &self,
        presented: PresentedRefresh,
        purpose: RefreshUse,
    ) -> StoreResult<CheckedSession>;
    async fn create_api_key(
        &self,
        app_id: &str,
        user_id: &str,
        key: &ApiKeyRow,
        key_hash: &str,
        now: i64,
    ) -> StoreResult<()>;
    async fn api_keys(&self, user_id: &str) -> StoreResult<Vec<ApiKeyRow>>;
    async fn api_key(&self, user_id: &str, id: &str) -> StoreResult<Option<ApiKeyRow>>;
    async fn api_key_by_hash(&self, app_id: &str, key_hash: &str) -> StoreResult<Option<ApiKeyRow>>;
    async fn delete_api_key(&self, user_id: &str, id: &str) -> StoreResult<bool>;
    async fn set_api_key_disabled(
        &self,
        user_id: &str,
        id: &str,
        disabled: bool,
    ) -> StoreResult<bool>;
    async fn userpass(&self, app_id: &str, email: &str) -> StoreResult<Option<UserpassRow>>;
    async fn register(
        &self,
        app_id: &str,
        email: &str,
        password_hash: &str,
        confirm: Option<MailToken>,
        now: i64,
    ) -> StoreResult<()>;
    async fn create_confirmed_user(
        &self,
        app_id: &str,
        email: &str,
        password_hash: &str,
        now: i64,
    ) -> StoreResult<(UserRow, Vec<IdentityRow>)>;
    async fn issue_mail_token(
        &self,
        app_id: &str,
        email: &str,
        token: MailToken,
    ) -> StoreResult<()>;
    async fn reset_token_hash(
        &self,
        app_id: &str,
        token_id: &str,
        now: i64,
    ) -> StoreResult<Option<String>>;
    async fn confirm(&self, app_id: &str, token: &str, token_id: &str, now: i64) -> StoreResult<()>;
    async fn set_password(
        &self,
        app_id: &str,
        account: PasswordAccount<'_>,
        password_hash: &str,
        now: i64,
    ) -> StoreResult<()>;
    async fn issue_email_otp(
        &self,
        app_id: &str,
        email: &str,
        code: EmailOtpCode,
    ) -> StoreResult<()>;
    async fn outbox(&self, app_id: &str, email: Option<&str>) -> StoreResult<Vec<OutboxRow>>;
    async fn claim_mail(
        &self,
        now: i64,
        lease_secs: i64,
        limit: i64,
    ) -> StoreResult<Vec<QueuedMail>>;
    async fn mail_outcome(&self, seq: i64, outcome: MailOutcome) -> StoreResult<()>;
    async fn mail_queue(&self, app_id: &str) -> StoreResult<Vec<MailRow>>;
    async fn record_events(&self, events: Vec<crate::audit::Event>) -> StoreResult<()>;
    async fn audit_events(
        &self,
        filter: crate::audit::Filter,
    ) -> StoreResult<Vec<crate::audit::Event>>;
    async fn prune_events(&self, before: i64, limit: i64) -> StoreResult<u64>;
    async fn mail_queue_depth(&self) -> StoreResult<(u64, u64)>;
    async fn retry_mail(&self, app_id: &str, now: i64) -> StoreResult<usize>;
    async fn sweep(&self, anon_cutoff: i64, session_cutoff: i64, now: i64) -> StoreResult<usize>;
}

//! # SessionKit
//!
//! The `App`/`User` API of the Atlas App Services SDKs, in Rust: log users in with five
//! providers, keep several users' sessions on the device, keep access tokens fresh with refresh
//! tokens, and hear the moment a session ends for good so the app can ask the user to log in
//! again.
//!
//! ```no_run
//! use std::sync::Arc;
//! use sessionkit::{App, AppConfig, Credentials, SessionError, User};
//!
//! # async fn demo() -> sessionkit::Result<()> {
//! let app = App::new(AppConfig::new("sessionkit-dev", "http://127.0.0.1:9090"))?;
//! app.set_session_error_handler(Some(Arc::new(|user: User, error: SessionError| {
//!     eprintln!("{} must log in again: {error}", user.id());
//! })));
//! let user = app.log_in(Credentials::anonymous()).await?;
//! let token = user.valid_access_token(None).await?;
//! # let _ = token;
//! # Ok(()) }
//! ```

mod api_keys;
mod app;
mod clock;
mod config;
mod credentials;
mod email_password;
mod error;
mod events;
mod jwt;
mod lifecycle;
mod log;
mod persist;
mod refresh;
mod storage;
mod transport;
mod user;

pub use api_keys::{ApiKey, ApiKeyAuth};
pub use app::App;
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{AppConfig, DEFAULT_MAX_RESPONSE_BYTES, DeviceInfo, StorageConfig};
pub use credentials::Credentials;
pub use email_password::EmailPasswordAuth;
pub use error::{AppError, Result, SessionError, SessionErrorKind};
pub use events::{AuthEvent, AuthEventKind, AuthEventListener, SessionErrorHandler, Subscription};
pub use log::{LogLevel, Logger, redact};
pub use storage::{FileStore, InMemoryStore, SessionStore, StoreError, StoreGuard};
pub use user::{HttpResponse, User, UserIdentity, UserProfile, UserState};

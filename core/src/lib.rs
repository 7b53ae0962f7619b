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

/// Defines a plain data type of the public API once, for the core and for the bindings.
/// `shared_type! { $ __name; #[derive(...)] => /// docs
/// pub struct Name { ... } }` defines the type here with the derives given before `=>`, and a
/// hidden exported macro `sessionkit::__name!(attributes)` that writes the same definition out
/// again with the caller's attributes in front. sessionkit-ffi calls it with
/// `uniffi::remote(Record)` (or `Enum`), so the bindings use this very type, with no second copy
/// of its shape to drift (#28 item 3, STYLE.md lesson 5). The caller imports the types the
/// fields name. Why not `#[derive(uniffi::Record)]` behind a feature: UniFFI makes every crate
/// with derives a namespace of its own, which moves these types into a second generated file
/// (another Kotlin package, Python module and Swift file) and so changes the bindings' API.
macro_rules! shared_type {
    ($d:tt $name:ident; $(#[$local:meta])* => $($item:tt)*) => {
        #[doc(hidden)]
        #[macro_export]
        macro_rules! $name {
            ($d($d attr:meta),* $d(,)?) => { $d(#[$d attr])* $($item)* };
        }
        $(#[$local])* $($item)*
    };
}

mod api_keys;
mod app;
mod backoff;
mod clock;
mod config;
mod context;
mod credentials;
mod dpop;
mod email_otp;
mod email_password;
mod error;
mod events;
mod hub;
mod jwt;
mod lifecycle;
mod log;
mod login;
mod logout;
mod persist;
mod refresh;
mod request;
mod session;
mod sessions;
mod storage;
mod token;
mod transport;
mod user;

pub use api_keys::{ApiKey, ApiKeyAuth};
pub use app::App;
pub use clock::{Clock, ManualClock, SystemClock};
pub use config::{AppConfig, DEFAULT_MAX_RESPONSE_BYTES, DeviceInfo, StorageConfig};
pub use credentials::Credentials;
pub use dpop::{DpopKey, DpopKeyError, DpopSigner};
pub use email_otp::EmailOtpAuth;
pub use email_password::EmailPasswordAuth;
pub use error::{AppError, Result, SessionError, SessionErrorKind};
pub use events::{AuthEvent, AuthEventListener, SessionErrorHandler};
pub use hub::Subscription;
pub use log::{LogLevel, Logger, redact};
pub use session::{AuthEventKind, UserIdentity, UserState};
pub use sessions::{LogOutScope, SessionDevice, SessionInfo};
pub use storage::{FileStore, InMemoryStore, SessionStore, StoreError, StoreGuard};
pub use user::{HttpResponse, User, UserProfile};

/// Entry points for the fuzz targets (`fuzz/`): the parsers that read outside input. Each takes
/// arbitrary bytes and must return (an error is fine) without panicking. Not API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing {
    /// The app id the fuzzed session documents are checked against.
    pub const APP_ID: &str = "sk-test"; // the app of tests/fixtures, whose files seed the corpus
    /// The key the fuzzed encrypted session documents are opened with.
    pub const KEY: [u8; 32] = [7; 32];

    /// Decodes a token from the server as the client does (claims read, no signature check).
    pub fn access_token(token: &str) {
        let _ = crate::jwt::decode(token);
    }

    /// Reads a stored session document, plain.
    pub fn session_document(bytes: &[u8]) {
        let _ = crate::storage::StoredState::decode(bytes, APP_ID);
    }

    /// Opens an encrypted session document, then reads it.
    pub fn encrypted_session_document(bytes: &[u8]) {
        if let Ok(plain) = crate::storage::encryption::open(&KEY, APP_ID, bytes) {
            let _ = crate::storage::StoredState::decode(&plain, APP_ID);
        }
    }
}

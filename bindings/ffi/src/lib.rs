//! UniFFI bindings of the `sessionkit` SDK: the App/User API of `docs/API.md` for Kotlin,
//! Swift and Python.
//!
//! Every type here wraps its core counterpart. Async functions run their core future on the
//! SDK's own multi-thread tokio runtime ([`runtime`]) and hand the foreign executor a join handle
//! to poll, so the refresh scheduler and single-flight refreshes outlive any one caller. Every
//! export that can fail returns `Result<_, AppError>`; nothing unwraps foreign input.

mod app;
mod config;
mod direct;
mod dpop;
mod errors;
mod events;
mod foreign;
mod logger;
mod runtime;
mod storage;
mod user;

pub use app::{App, EmailOtpAuth, EmailPasswordAuth};
pub use config::{AppConfig, DeviceInfo, StorageConfig};
pub use dpop::{DpopSigner, DpopSignerError};
pub use errors::AppError;
pub use events::{AuthEvent, AuthEventListener, SessionErrorHandler, Subscription};
pub use foreign::foreign_runtime_exiting;
pub use logger::Logger;
pub use storage::{SessionStore, StoreError};
pub use user::{ApiKeyAuth, HttpHeader, HttpResponse, User};

uniffi::setup_scaffolding!();

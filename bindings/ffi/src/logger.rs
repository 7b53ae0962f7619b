//! The foreign-implementable logger.

use std::sync::Arc;

use sessionkit as sk;
use sk::LogLevel;

use crate::errors::AppError;
use crate::foreign::{self, Foreign};

sessionkit::__log_level!(uniffi::remote(Enum));

/// Receives the SDK's log lines; no token or password ever appears in them.
#[uniffi::export(foreign)]
pub trait Logger: Send + Sync {
    fn log(&self, level: LogLevel, target: String, message: String) -> Result<(), AppError>;
}

pub(crate) struct LoggerAdapter(pub(crate) Foreign<Arc<dyn Logger>>);

impl sk::Logger for LoggerAdapter {
    fn log(&self, level: sk::LogLevel, target: &str, message: &str) {
        // A logger that raises loses that line; there is nowhere better to report it.
        foreign::call(|| self.0.log(level, target.to_string(), message.to_string()));
    }
}

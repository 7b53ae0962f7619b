//! The foreign-implementable logger.

use std::sync::Arc;

use sessionkit as sk;

use crate::errors::AppError;
use crate::foreign::{self, Foreign};

#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

impl From<sk::LogLevel> for LogLevel {
    fn from(l: sk::LogLevel) -> Self {
        match l {
            sk::LogLevel::Trace => Self::Trace,
            sk::LogLevel::Debug => Self::Debug,
            sk::LogLevel::Info => Self::Info,
            sk::LogLevel::Warn => Self::Warn,
            sk::LogLevel::Error => Self::Error,
        }
    }
}

/// Receives the SDK's log lines; no token or password ever appears in them.
#[uniffi::export(foreign)]
pub trait Logger: Send + Sync {
    fn log(&self, level: LogLevel, target: String, message: String) -> Result<(), AppError>;
}

pub(crate) struct LoggerAdapter(pub(crate) Foreign<Arc<dyn Logger>>);

impl sk::Logger for LoggerAdapter {
    fn log(&self, level: sk::LogLevel, target: &str, message: &str) {
        // A logger that raises loses that line; there is nowhere better to report it.
        foreign::call(|| {
            self.0
                .log(level.into(), target.to_string(), message.to_string())
        });
    }
}

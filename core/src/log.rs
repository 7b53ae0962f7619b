//! The SDK's log lines, to an app-supplied [`Logger`], with anything token-shaped redacted.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

shared_type! {
    $ __log_level;
    #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
    =>
    /// Severity of a log line.
    pub enum LogLevel {
        Trace,
        Debug,
        Info,
        Warn,
        Error,
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Trace => "TRACE",
            Self::Debug => "DEBUG",
            Self::Info => "INFO",
            Self::Warn => "WARN",
            Self::Error => "ERROR",
        })
    }
}

/// Receives the SDK's log lines. Messages never contain tokens or passwords.
pub trait Logger: Send + Sync {
    fn log(&self, level: LogLevel, target: &str, message: &str);
}

/// Replaces every JWT-shaped word (three base64url runs joined by dots, long enough to be a
/// token) with `<redacted>`: a second line of defence behind never formatting tokens at all.
pub fn redact(message: &str) -> String {
    let is_b64 = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '=';
    let mut out = String::with_capacity(message.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        // A sentence's full stop is not part of the token.
        let core = word.trim_end_matches('.');
        let parts: Vec<&str> = core.split('.').collect();
        if parts.len() == 3 && core.len() >= 24 && parts.iter().all(|p| !p.is_empty()) {
            out.push_str("<redacted>");
            out.push_str(&word[core.len()..]);
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in message.chars() {
        if is_b64(c) || c == '.' {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redacts_jwts_only() {
        let t = "eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjF9.c2lnbmF0dXJlLWhlcmU";
        assert_eq!(redact(&format!("token {t}, ok")), "token <redacted>, ok");
        assert_eq!(
            redact("see example.com and v1.2.3"),
            "see example.com and v1.2.3"
        );
        assert_eq!(redact(&format!("ends with {t}.")), "ends with <redacted>.");
    }
}

/// The App's handle on its logger; cheap to clone, a no-op without one or once closed.
#[derive(Clone, Default)]
pub(crate) struct Log {
    logger: Option<Arc<dyn Logger>>,
    /// Shared by every clone: after `App::close` no line reaches the app's logger.
    closed: Arc<AtomicBool>,
}

impl Log {
    pub(crate) fn new(logger: Option<Arc<dyn Logger>>) -> Self {
        Self {
            logger,
            closed: Arc::default(),
        }
    }
    /// Formats only when someone listens; redacts whatever is formatted.
    pub(crate) fn log(&self, level: LogLevel, target: &str, message: impl FnOnce() -> String) {
        if let Some(logger) = &self.logger
            && !self.closed.load(Ordering::Acquire)
        {
            logger.log(level, target, &redact(&message()));
        }
    }
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }
}

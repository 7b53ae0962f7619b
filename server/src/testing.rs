//! Support for test harnesses that start servers in-process (this repository's
//! `server/tests/common` and `tests/src/lib.rs`): the whole-suite secrets scan of #26.
//!
//! `scripts/test-all` sets `SESSIONKIT_TEST_SCAN_DIR`; every test server then also writes its
//! audit events as JSON lines and its metrics exposition (when it stops) into that directory,
//! and `scripts/scan-secrets` reads them, with every SQLite database and PostgreSQL test
//! database the suite left, looking for tokens, passwords, codes and hashes.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::config::Config;

/// The environment variable naming the scan directory.
pub const SCAN_DIR_VAR: &str = "SESSIONKIT_TEST_SCAN_DIR";

/// With [`SCAN_DIR_VAR`] set: gives `config` an audit log file of its own in that directory
/// (unless the config has one, which its test reads itself), turns metrics on (on a loopback
/// address of their own, so that `/metrics` on the main address stays as the test expects)
/// unless the config sets them, and names the file the exposition goes to when the server
/// stops. Without it, changes nothing.
pub fn prepare_for_scan(config: &mut Config) {
    let Some(dir) = std::env::var_os(SCAN_DIR_VAR).map(PathBuf::from) else {
        return;
    };
    static SERVERS: AtomicU64 = AtomicU64::new(0);
    let name = format!(
        "{}-{}",
        std::process::id(),
        SERVERS.fetch_add(1, Ordering::Relaxed)
    );
    if config.audit.log.is_none() {
        config.audit.log = Some(
            dir.join(format!("audit-{name}.jsonl"))
                .display()
                .to_string(),
        );
    }
    if !config.metrics.enabled {
        config.metrics.enabled = true;
        config.metrics.listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    }
    config.metrics.exposition_on_stop = Some(dir.join(format!("metrics-{name}.txt")));
}

//! Password hashing, bounded. An argon2id hash takes about 19 MiB and tens of milliseconds of a
//! core, so unbounded concurrent registrations or logins exhaust memory (64 at once took the
//! server to 1 GiB). Hashes run on at most one blocking thread per core; a short queue waits
//! for them, and beyond it a request is refused at once with 503 and `Retry-After`.
//!
//! Unknown emails are checked against a dummy hash, so a login costs the same whether or not
//! the account exists and its timing does not tell (OWASP ASVS V2.2, "account enumeration").

use std::sync::LazyLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Semaphore;

use crate::error::ApiError;
use crate::tokens;

/// Seconds a refused caller is told to wait.
const RETRY_AFTER_SECS: u64 = 1;

/// What unknown accounts are verified against: a real hash of a password nobody has.
static DUMMY: LazyLock<String> = LazyLock::new(|| tokens::hash_password(&tokens::random_alnum(32)));

/// The hashing pool.
pub struct Passwords {
    running: Semaphore,
    /// Requests admitted (running or queued).
    admitted: AtomicUsize,
    capacity: usize,
}

impl Passwords {
    /// `workers` hashes at once (at least 1), plus `queue` waiting.
    pub fn new(workers: usize, queue: usize) -> Self {
        let workers = workers.max(1);
        Self {
            running: Semaphore::new(workers),
            admitted: AtomicUsize::new(0),
            capacity: workers + queue,
        }
    }

    /// One worker per core and a queue of four per worker.
    pub fn for_this_machine() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::new(cores, 4 * cores)
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        struct Admitted<'a>(&'a AtomicUsize);
        impl Drop for Admitted<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        if self.admitted.fetch_add(1, Ordering::SeqCst) >= self.capacity {
            self.admitted.fetch_sub(1, Ordering::SeqCst);
            return Err(ApiError::unavailable(
                "too many password checks in progress; retry shortly",
                RETRY_AFTER_SECS,
            ));
        }
        let _admitted = Admitted(&self.admitted);
        let _running = self
            .running
            .acquire()
            .await
            .map_err(|_| ApiError::internal())?;
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|_| ApiError::internal())
    }

    /// An argon2id PHC string for `password`.
    pub async fn hash(&self, password: String) -> Result<String, ApiError> {
        self.run(move || tokens::hash_password(&password)).await
    }

    /// Whether `password` matches `phc`; with no account (`None`), the same work against a
    /// dummy hash, and false.
    pub async fn verify(&self, password: String, phc: Option<String>) -> Result<bool, ApiError> {
        self.run(move || match phc {
            Some(phc) => tokens::verify_password(&password, &phc),
            None => {
                tokens::verify_password(&password, &DUMMY);
                false
            }
        })
        .await
    }
}

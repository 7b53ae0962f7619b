//! Password hashing, bounded. An argon2id hash takes about 19 MiB and tens of milliseconds of a
//! core, so unbounded concurrent registrations or logins exhaust memory (64 at once took the
//! server to 1 GiB). Hashes run on at most one blocking thread per core; a short queue waits
//! for them, and beyond it a request is refused at once with 503 and `Retry-After`.
//!
//! Unknown emails are checked against a dummy hash, so a login costs the same whether or not
//! the account exists and its timing does not tell (OWASP ASVS V2.2, "account enumeration").
//!
//! Passwords are prepared as RFC 8265's OpaqueString profile does before they are hashed or
//! compared ([`prepare`]): a password typed as NFC `café` on one device and NFD on another is
//! one password (#22). Hashes made before that are of the password as it was sent, and keep
//! working for that spelling ([`Passwords::verify`]).

use std::sync::LazyLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Semaphore;
use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

use crate::error::ApiError;
use crate::legacy_hashes::LegacyHash;
use crate::tokens;

/// Seconds a refused caller is told to wait.
const RETRY_AFTER_SECS: u64 = 1;

/// What unknown accounts are verified against: a real hash of a password nobody has.
static DUMMY: LazyLock<String> = LazyLock::new(|| tokens::hash_password(&tokens::random_alnum(32)));

/// A password as it is hashed and compared: RFC 8265 section 4.2 (OpaqueString), i.e. every
/// non-ASCII space (general category Zs) mapped to U+0020, then Unicode NFC. No case or width
/// mapping: `Café` and `café` stay different passwords.
pub fn prepare(raw: &str) -> String {
    raw.chars()
        .map(|c| {
            if !c.is_ascii() && c.general_category() == GeneralCategory::SpaceSeparator {
                ' '
            } else {
                c
            }
        })
        .nfc()
        .collect()
}

/// A new password (registration, reset, the admin API), prepared ([`prepare`]) and checked:
/// 6 to 128 characters after preparation, and no control characters (RFC 8265 section 4.2.2
/// takes OpaqueString from the FreeformClass, which disallows them). 400 BadRequest otherwise.
pub fn new_password(raw: &str) -> Result<String, ApiError> {
    let password = prepare(raw);
    let n = password.chars().count();
    if !(6..=128).contains(&n) {
        return Err(ApiError::bad_request(
            "password must be between 6 and 128 characters",
        ));
    }
    if password.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "a password cannot contain control characters (such as a line break or a tab)",
        ));
    }
    Ok(password)
}

/// The password column of an email account, told apart by its form: the server's own argon2id
/// PHC string, a hash an import brought from another system (kept behind [`LEGACY_MARK`] until
/// the user's next login replaces it, #24), or the mark of an imported account that has no
/// password until a reset sets one ([`MUST_RESET_MARK`]). Neither mark is a PHC string, so no
/// argon2 check ever matches a marked column.
pub enum StoredPassword<'a> {
    /// The server's own hash.
    Own(&'a str),
    /// An imported hash, to be checked with [`Passwords::verify_legacy`].
    Legacy(LegacyHash),
    /// No password: the user sets one through a reset (login: 401 PasswordResetRequired).
    MustReset,
}

/// What precedes an imported hash in the password column.
pub const LEGACY_MARK: &str = "legacy:";
/// The password column of an imported account that must reset its password.
pub const MUST_RESET_MARK: &str = "!must-reset";

impl<'a> StoredPassword<'a> {
    /// Reads a password column. A marked legacy hash that no longer parses (it was checked when
    /// imported) is logged and read as [`StoredPassword::MustReset`]: that account logs in
    /// after a reset, never with a hash that is not understood.
    pub fn of(column: &'a str) -> StoredPassword<'a> {
        if column == MUST_RESET_MARK {
            return StoredPassword::MustReset;
        }
        match column.strip_prefix(LEGACY_MARK) {
            Some(hash) => match LegacyHash::parse(hash) {
                Ok(h) => StoredPassword::Legacy(h),
                Err(e) => {
                    // The error names the scheme and the faulty field, never the hash's salt or
                    // digest (legacy_hashes.rs), so this line holds nothing to crack.
                    tracing::error!("an imported password hash no longer parses: {e}");
                    StoredPassword::MustReset
                }
            },
            None => StoredPassword::Own(column),
        }
    }

    /// The password column for this (a legacy hash is stored in its canonical form,
    /// [`LegacyHash::as_stored`]).
    pub fn to_column(&self) -> String {
        match self {
            StoredPassword::Own(phc) => (*phc).to_string(),
            StoredPassword::Legacy(h) => format!("{LEGACY_MARK}{}", h.as_stored()),
            StoredPassword::MustReset => MUST_RESET_MARK.to_string(),
        }
    }
}

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

    /// Hashes and checks admitted now: running, or waiting for a worker (the metrics'
    /// `password_hash_queue`).
    pub fn admitted(&self) -> usize {
        self.admitted.load(Ordering::SeqCst)
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

    /// An argon2id PHC string for `password`, prepared first ([`prepare`]).
    pub async fn hash(&self, password: String) -> Result<String, ApiError> {
        self.run(move || tokens::hash_password(&prepare(&password)))
            .await
    }

    /// Whether `password` matches `phc`: its prepared form ([`prepare`]), or else, when that
    /// differs, the password as sent, which is what a hash made before preparation (#22) is of,
    /// so no account is locked out by the change. With no account (`None`), the same work
    /// against a dummy hash, and false.
    pub async fn verify(&self, password: String, phc: Option<String>) -> Result<bool, ApiError> {
        self.run(move || {
            let prepared = prepare(&password);
            let as_sent = (prepared != password).then_some(password);
            match phc {
                Some(phc) => {
                    tokens::verify_password(&prepared, &phc)
                        || as_sent.is_some_and(|p| tokens::verify_password(&p, &phc))
                }
                None => {
                    // The same number of hashes as with an account and a wrong password.
                    tokens::verify_password(&prepared, &DUMMY);
                    if let Some(p) = as_sent {
                        tokens::verify_password(&p, &DUMMY);
                    }
                    false
                }
            }
        })
        .await
    }

    /// Whether `password` matches a hash an import brought from another system (#24,
    /// [`LegacyHash`]), checked under the same bound as argon2: the same workers and queue, and
    /// 503 with `Retry-After` beyond them. The old system hashed the password as it was sent, so
    /// that is tried first; when preparation ([`prepare`]) changes it, the prepared form too.
    /// On `true` the caller replaces the legacy hash at once with [`Passwords::hash`] of the
    /// same password (every legacy hash is upgraded at its first successful login).
    pub async fn verify_legacy(
        &self,
        password: String,
        hash: LegacyHash,
    ) -> Result<bool, ApiError> {
        self.run(move || {
            let prepared = prepare(&password);
            hash.verify(password.as_bytes())
                || (prepared != password && hash.verify(prepared.as_bytes()))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::{Passwords, prepare};
    use crate::tokens;

    const NFC: &str = "caf\u{e9}-au-lait";
    const NFD: &str = "cafe\u{301}-au-lait";

    #[test]
    fn prepare_is_nfc_with_spaces_mapped_and_nothing_else() {
        assert_eq!(prepare(NFD), NFC);
        assert_eq!(prepare(NFC), NFC);
        assert_eq!(prepare("a\u{A0}b\u{3000}c\u{2009}d"), "a b c d");
        assert_eq!(prepare("Caf\u{e9}"), "Caf\u{e9}"); // no case mapping
        assert_eq!(prepare("\u{FF41}"), "\u{FF41}"); // no width mapping (NFC, not NFKC)
    }

    /// Legacy hashes (#24) are checked through the same gate as argon2: with the pool full, a
    /// legacy check is refused with 503 like any other; with room, it runs.
    #[tokio::test]
    async fn legacy_hashes_are_checked_through_the_same_gate() {
        use std::sync::atomic::Ordering;
        let pool = Passwords::new(1, 0);
        let hash =
            crate::legacy_hashes::LegacyHash::parse(&bcrypt::hash("gated", 4).unwrap()).unwrap();
        // As while another login's argon2 check holds the only place.
        pool.admitted.fetch_add(1, Ordering::SeqCst);
        let e = pool
            .verify_legacy("gated".into(), hash.clone())
            .await
            .unwrap_err();
        assert_eq!(e.status, axum::http::StatusCode::SERVICE_UNAVAILABLE);
        pool.admitted.fetch_sub(1, Ordering::SeqCst);
        assert!(pool.verify_legacy("gated".into(), hash).await.unwrap());
        assert_eq!(pool.admitted.load(Ordering::SeqCst), 0);
    }

    /// A hash made before passwords were prepared is of the password as the client sent it:
    /// that spelling still logs in, so the change locks no account out.
    #[tokio::test]
    async fn a_hash_made_before_preparation_still_matches_its_spelling() {
        let pool = Passwords::new(1, 4);
        let legacy = tokens::hash_password(NFD);
        assert!(pool.verify(NFD.into(), Some(legacy.clone())).await.unwrap());
        assert!(!pool.verify("wrong".into(), Some(legacy)).await.unwrap());
        // A new hash is of the prepared form: both spellings match it.
        let new = pool.hash(NFD.into()).await.unwrap();
        assert!(pool.verify(NFC.into(), Some(new.clone())).await.unwrap());
        assert!(pool.verify(NFD.into(), Some(new)).await.unwrap());
        assert!(!pool.verify(NFD.into(), None).await.unwrap());
    }
}

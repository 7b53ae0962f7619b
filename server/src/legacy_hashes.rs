//! Password hashes an import brings from another system (#24): parsed and bounded once, when
//! the import is read, and verified at the user's next login, after which the caller replaces
//! them with the server's own argon2id hash ([`crate::passwords::Passwords::hash`]). Every
//! legacy hash is upgraded that way; none is kept after a successful login.
//!
//! Accepted (docs/SERVER.md, "Password hashes an import may bring", lists them with examples):
//! - argon2id, argon2i, argon2d as PHC strings (`$argon2id$v=19$m=65536,t=3,p=4$salt$hash`,
//!   what argon2-cffi, libsodium and the reference `argon2` tool write);
//! - bcrypt in modular crypt form, `$2a$`, `$2b$` or `$2y$` (what bcrypt libraries write);
//! - scrypt as the PHC string RustCrypto's `scrypt` crate writes
//!   (`$scrypt$ln=15,r=8,p=1$salt$hash`; passlib's `scrypt` writes the same);
//! - PBKDF2-HMAC-SHA256 as the PHC string RustCrypto's `pbkdf2` crate writes
//!   (`$pbkdf2-sha256$i=600000,l=32$salt$hash`), or passlib's `pbkdf2_sha256` form
//!   (`$pbkdf2-sha256$29000$salt$hash`, adapted base64), stored converted to the former;
//! - Firebase's modified scrypt ([`LegacyHash::firebase_scrypt`]), stored as
//!   `$firebase-scrypt$rounds=8,mem_cost=14$salt_separator$signer_key$salt$hash`.
//!
//! "salt" and "hash" in PHC strings are PHC's B64: standard base64 without `=` padding, of the
//! raw salt and hash bytes. Tools that hand out raw bytes (Python's `hashlib.scrypt` and
//! `hashlib.pbkdf2_hmac`) are converted by writing those bytes so (docs/SERVER.md has the
//! example).
//!
//! Costs are capped ([`MAX_MEMORY_BYTES`] and the per-scheme limits below), because the hash
//! decides what a login costs: an imported `m=4194304` argon2 hash or `ln=24` scrypt hash would
//! make each of that user's logins take gigabytes or minutes. Such hashes are refused when
//! parsed, naming the limit, and the user can be imported with `must_reset` instead.
//!
//! All hashing is RustCrypto's (argon2, scrypt, pbkdf2, aes, ctr) or the `bcrypt` crate; the
//! Firebase variant is the composition of scrypt and AES-256-CTR that firebase/scrypt defines
//! (lib/scryptenc/scryptenc.c, `scryptenc_buf_saltlen`). Comparisons are constant-time.

use std::fmt;

use base64::Engine;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use password_hash::{PasswordHash, PasswordVerifier};
use subtle::ConstantTimeEq;

/// The most memory one verification may use, in bytes (128 MiB): argon2's `m` (KiB), and
/// scrypt's and Firebase's 128·N·r. Covers argon2-cffi's default (64 MiB), RustCrypto scrypt's
/// default (ln=17, r=8: 128 MiB) and Firebase's (mem_cost 14, rounds 8: 16 MiB). Each
/// verification holds one of the password pool's workers, so the worst case is this times the
/// number of workers (one per core).
///
/// The time caps below aim at about a second for one verification at the cap, measured in a
/// release build on one core of the project's 2-core machine (argon2 at 128 MiB × 4 passes:
/// 0.56 s; scrypt at 128 MiB, p=4: 0.96 s; bcrypt cost 14: 1.2 s; PBKDF2 3,000,000: 0.32 s).
pub const MAX_MEMORY_BYTES: u64 = 128 * 1024 * 1024;
/// The most argon2 passes (`t`) accepted. Small-memory profiles use more passes (OWASP's
/// 7 MiB profile: t=5), so `t` alone is capped loosely and `m·t` by
/// [`MAX_ARGON2_MEMORY_PASSES_KIB`].
pub const MAX_ARGON2_PASSES: u32 = 16;
/// The most argon2 work accepted, as `m` (KiB) × `t`: 4 passes over 128 MiB. argon2-cffi's
/// default (64 MiB × 3) and OWASP's profiles are within it.
pub const MAX_ARGON2_MEMORY_PASSES_KIB: u64 = 4 * 128 * 1024;
/// The most argon2 lanes (`p`) accepted. The lanes run one after another here and share `m`,
/// so `p` does not add work; the cap only refuses nonsense.
pub const MAX_ARGON2_LANES: u32 = 64;
/// The highest bcrypt cost accepted (2^14 rounds); 10 to 12 is what bcrypt libraries default
/// to.
pub const MAX_BCRYPT_COST: u32 = 14;
/// The most scrypt parallelism (`p`) accepted: the p mixes run one after another, each a full
/// pass over the memory.
pub const MAX_SCRYPT_P: u32 = 4;
/// The most PBKDF2-HMAC-SHA256 iterations accepted (OWASP asks for 600,000; Django 6.0 uses
/// 1,200,000).
pub const MAX_PBKDF2_ITERATIONS: u32 = 3_000_000;
/// The longest Firebase signer key, salt and salt separator accepted, in bytes after base64
/// decoding (Firebase's are 64, 10 and 1).
pub const MAX_FIREBASE_FIELD_BYTES: usize = 1024;

/// The hash schemes an import may bring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// argon2id, argon2i or argon2d, PHC string.
    Argon2,
    /// bcrypt, `$2a$`/`$2b$`/`$2y$` modular crypt string.
    Bcrypt,
    /// scrypt, PHC string.
    Scrypt,
    /// PBKDF2-HMAC-SHA256, PHC string (or passlib's form, converted).
    Pbkdf2Sha256,
    /// Firebase's modified scrypt, with its project's parameters.
    FirebaseScrypt,
}

impl Scheme {
    /// The scheme's name as errors and docs spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Argon2 => "argon2",
            Scheme::Bcrypt => "bcrypt",
            Scheme::Scrypt => "scrypt",
            Scheme::Pbkdf2Sha256 => "pbkdf2-sha256",
            Scheme::FirebaseScrypt => "firebase-scrypt",
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a hash was refused. The messages name the field or the limit and never quote the hash.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LegacyHashError {
    /// Not one of the accepted schemes (the identifier found, if any, is in the message).
    #[error(
        "unsupported password hash {found}: an import accepts argon2id/argon2i/argon2d, \
         bcrypt ($2a$, $2b$, $2y$), scrypt and pbkdf2-sha256 PHC strings, and Firebase scrypt \
         with its project parameters (docs/SERVER.md, \"Password hashes an import may bring\"); \
         import the user with must_reset instead"
    )]
    Unsupported {
        /// What was found, e.g. "scheme `$md5$`" or "text that does not start with `$`".
        found: String,
    },
    /// The scheme is known but the string is not a valid hash of it.
    #[error("malformed {scheme} hash: {reason}")]
    Malformed {
        /// The scheme.
        scheme: Scheme,
        /// What is wrong, naming the field.
        reason: String,
    },
    /// The hash's cost parameters exceed what one login may cost here.
    #[error(
        "{scheme} hash over the limit: {what} is {value}, at most {limit} is accepted so that no \
         login costs more; import the user with must_reset instead"
    )]
    OverLimit {
        /// The scheme.
        scheme: Scheme,
        /// The parameter, e.g. "memory (m, KiB)".
        what: &'static str,
        /// Its value in the hash.
        value: u64,
        /// The cap (see the `MAX_*` constants).
        limit: u64,
    },
}

fn malformed(scheme: Scheme, reason: impl Into<String>) -> LegacyHashError {
    LegacyHashError::Malformed {
        scheme,
        reason: reason.into(),
    }
}

fn check(
    scheme: Scheme,
    what: &'static str,
    value: u64,
    limit: u64,
) -> Result<(), LegacyHashError> {
    if value > limit {
        return Err(LegacyHashError::OverLimit {
            scheme,
            what,
            value,
            limit,
        });
    }
    Ok(())
}

/// A Firebase project's password hash parameters, as its console shows them ("Password Hash
/// Parameters") and `firebase auth:import` takes them (`--hash-key`, `--salt-separator`,
/// `--rounds`, `--mem-cost`).
#[derive(Clone)]
pub struct FirebaseParams {
    /// `base64_signer_key` (the hash key), base64.
    pub signer_key: String,
    /// `base64_salt_separator`, base64.
    pub salt_separator: String,
    /// `rounds`: scrypt's block size r (1 to 8 in Firebase).
    pub rounds: u32,
    /// `mem_cost`: log2 of scrypt's N (1 to 14 in Firebase).
    pub mem_cost: u32,
}

impl fmt::Debug for FirebaseParams {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The signer key is the project's secret pepper: never printed.
        f.debug_struct("FirebaseParams")
            .field("signer_key", &"<redacted>")
            .field("salt_separator", &self.salt_separator)
            .field("rounds", &self.rounds)
            .field("mem_cost", &self.mem_cost)
            .finish()
    }
}

/// A parsed, bounded legacy password hash. Build it with [`LegacyHash::parse`] (any accepted
/// string, including [`LegacyHash::as_stored`]'s) or [`LegacyHash::firebase_scrypt`]; check a
/// password with [`LegacyHash::verify`] (slow: on the password pool, through
/// [`crate::passwords::Passwords::verify_legacy`]).
#[derive(Clone)]
pub struct LegacyHash {
    scheme: Scheme,
    /// The canonical string: what [`LegacyHash::parse`] reads back to this same hash.
    stored: String,
    /// Decoded Firebase fields (the other schemes re-read `stored`, a cheap parse).
    firebase: Option<Firebase>,
}

#[derive(Clone)]
struct Firebase {
    signer_key: Vec<u8>,
    /// The user's salt followed by the project's salt separator, as scrypt takes it.
    salt: Vec<u8>,
    hash: Vec<u8>,
    rounds: u32,
    mem_cost: u8,
}

impl fmt::Debug for LegacyHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The hash is what an offline guesser needs: never printed.
        f.debug_struct("LegacyHash")
            .field("scheme", &self.scheme)
            .finish_non_exhaustive()
    }
}

/// Base64 as Firebase exports write it: standard alphabet, padding optional. The URL-safe
/// alphabet (`-`, `_`, which Admin SDK listings use) is mapped to it first.
const FIREBASE_B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_encode_padding(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

fn firebase_b64(field: &str, value: &str) -> Result<Vec<u8>, LegacyHashError> {
    let bytes = FIREBASE_B64
        .decode(value.trim().replace('-', "+").replace('_', "/"))
        .map_err(|_| malformed(Scheme::FirebaseScrypt, format!("{field} is not base64")))?;
    if bytes.is_empty() {
        return Err(malformed(
            Scheme::FirebaseScrypt,
            format!("{field} is empty"),
        ));
    }
    check(
        Scheme::FirebaseScrypt,
        "length in bytes",
        bytes.len() as u64,
        MAX_FIREBASE_FIELD_BYTES as u64,
    )?;
    Ok(bytes)
}

/// Bytes of memory an scrypt of N = 2^log_n and block size r takes (128·N·r), saturating.
fn scrypt_memory(log_n: u32, r: u32) -> u64 {
    if log_n >= 64 {
        return u64::MAX;
    }
    // In u128: 128·2^63·(2^32 − 1) < 2^102, where u64 would wrap to a small number.
    u64::try_from((128u128 << log_n) * u128::from(r)).unwrap_or(u64::MAX)
}

/// Crypt and PHC scheme names an import may meet but does not accept, named back in its
/// refusal; any other identifier is not quoted.
const KNOWN_OTHER_SCHEMES: &[&str] = &[
    "1",
    "3",
    "5",
    "6",
    "7",
    "apr1",
    "md5",
    "sha1",
    "sha256",
    "sha512",
    "y",
    "gy",
    "argon2",
    "scrypt-sha256",
    "pbkdf2",
    "pbkdf2-sha1",
    "pbkdf2-sha512",
    "bcrypt",
    "bcrypt-sha256",
    "balloon",
    "sm3",
    "nt",
];

impl LegacyHash {
    /// Parses an argon2, bcrypt, scrypt or PBKDF2-SHA256 hash string, or a stored
    /// `$firebase-scrypt$` string ([`LegacyHash::as_stored`]). Surrounding whitespace is
    /// ignored. Errors: [`LegacyHashError::Unsupported`] for another scheme,
    /// [`LegacyHashError::Malformed`] naming the bad field, [`LegacyHashError::OverLimit`]
    /// naming the cap.
    pub fn parse(s: &str) -> Result<LegacyHash, LegacyHashError> {
        let s = s.trim();
        let Some(rest) = s.strip_prefix('$') else {
            return Err(LegacyHashError::Unsupported {
                found: "text that does not start with `$`".into(),
            });
        };
        let ident = rest.split('$').next().unwrap_or_default();
        match ident {
            "2a" | "2b" | "2y" => parse_bcrypt(s),
            "argon2id" | "argon2i" | "argon2d" => parse_argon2(s),
            "scrypt" => parse_scrypt(s),
            "pbkdf2-sha256" => parse_pbkdf2(s),
            "firebase-scrypt" => parse_firebase_stored(s),
            "2x" | "2" => Err(LegacyHashError::Unsupported {
                found: format!(
                    "bcrypt variant `${ident}$` (a bug-compatible or pre-1997 form; only $2a$, \
                     $2b$ and $2y$ are checked here)"
                ),
            }),
            // Quoted only when it is a known scheme's name: text after a lone `$` may be the
            // digest itself (a lowercase hex MD5 reads like a name), which an error (an
            // import's report, a log line) must not repeat.
            _ if KNOWN_OTHER_SCHEMES.contains(&ident) => Err(LegacyHashError::Unsupported {
                found: format!("scheme `${ident}$`"),
            }),
            _ => Err(LegacyHashError::Unsupported {
                found: "text after `$` that is not a scheme's name".into(),
            }),
        }
    }

    /// A Firebase scrypt hash: the user's `passwordHash` and `salt` from `firebase
    /// auth:export` (base64, standard or URL-safe alphabet), with the project's parameters.
    /// Errors as [`LegacyHash::parse`]'s: a field that is not base64 or is empty, a hash whose
    /// length is not the signer key's (it is the key, encrypted), `rounds` or `mem_cost` of 0,
    /// or 128·2^mem_cost·rounds over [`MAX_MEMORY_BYTES`].
    pub fn firebase_scrypt(
        hash: &str,
        salt: &str,
        project: &FirebaseParams,
    ) -> Result<LegacyHash, LegacyHashError> {
        let scheme = Scheme::FirebaseScrypt;
        let signer_key = firebase_b64("the signer key", &project.signer_key)?;
        let separator = firebase_b64("the salt separator", &project.salt_separator)?;
        let mut salt_bytes = firebase_b64("the salt", salt)?;
        let hash_bytes = firebase_b64("the hash", hash)?;
        if hash_bytes.len() != signer_key.len() {
            return Err(malformed(
                scheme,
                format!(
                    "the hash is {} bytes, but a Firebase hash is as long as the project's signer \
                     key ({} bytes): is the signer key the one of the project the user was \
                     exported from?",
                    hash_bytes.len(),
                    signer_key.len()
                ),
            ));
        }
        if project.rounds == 0 || project.mem_cost == 0 {
            return Err(malformed(scheme, "rounds and mem_cost must be at least 1"));
        }
        check(
            scheme,
            "memory (128·2^mem_cost·rounds bytes)",
            scrypt_memory(project.mem_cost, project.rounds),
            MAX_MEMORY_BYTES,
        )?;
        let mem_cost = project.mem_cost as u8; // < 64: the memory cap holds
        scrypt::Params::new(mem_cost, project.rounds, 1, 32)
            .map_err(|_| malformed(scheme, "rounds and mem_cost are not valid scrypt r and N"))?;
        let stored = format!(
            "$firebase-scrypt$rounds={},mem_cost={}${}${}${}${}",
            project.rounds,
            project.mem_cost,
            FIREBASE_B64.encode(&separator),
            FIREBASE_B64.encode(&signer_key),
            FIREBASE_B64.encode(&salt_bytes),
            FIREBASE_B64.encode(&hash_bytes),
        );
        salt_bytes.extend_from_slice(&separator);
        Ok(LegacyHash {
            scheme,
            stored,
            firebase: Some(Firebase {
                signer_key,
                salt: salt_bytes,
                hash: hash_bytes,
                rounds: project.rounds,
                mem_cost,
            }),
        })
    }

    /// The scheme.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The canonical string to store until the user's next login: [`LegacyHash::parse`] of it
    /// gives this hash back. The input itself (trimmed) for argon2, bcrypt, scrypt and PHC
    /// PBKDF2; passlib's PBKDF2 form converted to PHC; the `$firebase-scrypt$` form, which
    /// carries the project's signer key, for Firebase. Secret-like: store it as a password
    /// hash, never log it.
    pub fn as_stored(&self) -> &str {
        &self.stored
    }

    /// Whether `password` (the bytes the old system hashed: UTF-8 as the user typed it) matches.
    /// Constant-time in the comparison. Slow by design (what the scheme costs, within the
    /// caps): call on a blocking thread, through
    /// [`crate::passwords::Passwords::verify_legacy`]. bcrypt reads the first 72 bytes only, as
    /// every bcrypt implementation does.
    pub fn verify(&self, password: &[u8]) -> bool {
        match self.scheme {
            Scheme::Argon2 => verify_phc(&argon2::Argon2::default(), password, &self.stored),
            Scheme::Scrypt => verify_phc(&scrypt::Scrypt, password, &self.stored),
            Scheme::Pbkdf2Sha256 => verify_phc(&pbkdf2::Pbkdf2, password, &self.stored),
            Scheme::Bcrypt => bcrypt::verify(password, &self.stored).unwrap_or(false),
            Scheme::FirebaseScrypt => self
                .firebase
                .as_ref()
                .is_some_and(|f| verify_firebase(f, password)),
        }
    }
}

impl std::str::FromStr for LegacyHash {
    type Err = LegacyHashError;

    /// [`LegacyHash::parse`].
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LegacyHash::parse(s)
    }
}

fn verify_phc(verifier: &dyn PasswordVerifier, password: &[u8], stored: &str) -> bool {
    // Parsed once already; the crate compares the outputs in constant time (password-hash's
    // `Output` equality).
    PasswordHash::new(stored).is_ok_and(|h| verifier.verify_password(password, &h).is_ok())
}

fn verify_firebase(f: &Firebase, password: &[u8]) -> bool {
    use aes::cipher::{KeyIvInit, StreamCipher};
    // firebase/scrypt scryptenc_buf_saltlen: scrypt(password, salt ‖ separator, N = 2^mem_cost,
    // r = rounds, p = 1); the first 32 bytes of the key key AES-256-CTR with a zero nonce and
    // counter (libcperciva's crypto_aesctr: 64-bit nonce 0 ‖ 64-bit big-endian block count),
    // which encrypts the signer key. PBKDF2's blocks are independent, so a 32-byte output is
    // the first 32 bytes of the 64 that firebase/scrypt derives.
    let Ok(params) = scrypt::Params::new(f.mem_cost, f.rounds, 1, 32) else {
        return false;
    };
    let mut key = [0u8; 32];
    if scrypt::scrypt(password, &f.salt, &params, &mut key).is_err() {
        return false;
    }
    let mut out = f.signer_key.clone();
    ctr::Ctr128BE::<aes::Aes256>::new(&key.into(), &[0u8; 16].into()).apply_keystream(&mut out);
    out.ct_eq(&f.hash).into()
}

/// Parses a PHC string, checking that it has a salt that decodes and a hash.
fn phc(scheme: Scheme, s: &str) -> Result<PasswordHash<'_>, LegacyHashError> {
    let hash =
        PasswordHash::new(s).map_err(|e| malformed(scheme, format!("not a PHC string ({e})")))?;
    let Some(salt) = hash.salt else {
        return Err(malformed(scheme, "no salt"));
    };
    if salt.decode_b64(&mut [0u8; 64]).is_err() {
        return Err(malformed(
            scheme,
            "the salt is not B64 (standard base64 without padding)",
        ));
    }
    if hash.hash.is_none() {
        return Err(malformed(scheme, "no hash after the salt"));
    }
    Ok(hash)
}

fn parse_argon2(s: &str) -> Result<LegacyHash, LegacyHashError> {
    let scheme = Scheme::Argon2;
    let hash = phc(scheme, s)?;
    if let Some(v) = hash.version
        && argon2::Version::try_from(v).is_err()
    {
        return Err(malformed(
            scheme,
            format!("unknown version v={v} (16 or 19)"),
        ));
    }
    let params = argon2::Params::try_from(&hash)
        .map_err(|e| malformed(scheme, format!("bad parameters ({e})")))?;
    if !params.keyid().is_empty() {
        return Err(malformed(
            scheme,
            "keyed hash (keyid): it needs the old system's secret key, which an import does not carry",
        ));
    }
    let m = u64::from(params.m_cost());
    let t = u64::from(params.t_cost());
    check(scheme, "memory (m, KiB)", m, MAX_MEMORY_BYTES / 1024)?;
    check(scheme, "passes (t)", t, MAX_ARGON2_PASSES.into())?;
    check(
        scheme,
        "work (m×t, KiB)",
        m * t,
        MAX_ARGON2_MEMORY_PASSES_KIB,
    )?;
    check(
        scheme,
        "lanes (p)",
        params.p_cost().into(),
        MAX_ARGON2_LANES.into(),
    )?;
    Ok(LegacyHash {
        scheme,
        stored: s.to_owned(),
        firebase: None,
    })
}

fn parse_bcrypt(s: &str) -> Result<LegacyHash, LegacyHashError> {
    let scheme = Scheme::Bcrypt;
    // $2b$CC$ + 22 characters of salt + 31 of hash, in bcrypt's own base64 alphabet.
    let parts: Vec<&str> = s.split('$').collect();
    let [_, _, cost, salt_hash] = parts[..] else {
        return Err(malformed(
            scheme,
            "expected $2b$<cost>$<53 characters of salt and hash>",
        ));
    };
    let cost: u32 = match cost.parse() {
        Ok(c) if cost.len() == 2 => c,
        _ => return Err(malformed(scheme, "the cost is not two digits")),
    };
    if cost < 4 {
        return Err(malformed(scheme, "the cost is below 4, bcrypt's minimum"));
    }
    check(scheme, "cost", cost.into(), MAX_BCRYPT_COST.into())?;
    let alphabet = |c: char| c.is_ascii_alphanumeric() || c == '.' || c == '/';
    if salt_hash.len() != 53 || !salt_hash.chars().all(alphabet) {
        return Err(malformed(
            scheme,
            "salt and hash are not 53 characters of bcrypt's base64 (A-Z a-z 0-9 . /)",
        ));
    }
    Ok(LegacyHash {
        scheme,
        stored: s.to_owned(),
        firebase: None,
    })
}

/// passlib's adapted base64 (its `pbkdf2_sha256`) writes `.` where PHC's B64 has `+`; no other
/// difference (both are unpadded). Applied to the salt and hash fields only.
fn from_passlib_b64(field: &str) -> String {
    field.replace('.', "+")
}

fn parse_scrypt(s: &str) -> Result<LegacyHash, LegacyHashError> {
    let scheme = Scheme::Scrypt;
    let hash = phc(scheme, s)?;
    // The scrypt crate fills in ln=17, r=8, p=1 for a parameter left out.
    let params = scrypt::Params::try_from(&hash).map_err(|_| {
        malformed(
            scheme,
            "bad parameters: expected ln=<log2 N>,r=<block size>,p=<parallelism> within scrypt's \
             bounds",
        )
    })?;
    check(
        scheme,
        "memory (128·2^ln·r bytes)",
        scrypt_memory(params.log_n().into(), params.r()),
        MAX_MEMORY_BYTES,
    )?;
    check(
        scheme,
        "parallelism (p)",
        params.p().into(),
        MAX_SCRYPT_P.into(),
    )?;
    Ok(LegacyHash {
        scheme,
        stored: s.to_owned(),
        firebase: None,
    })
}

fn parse_pbkdf2(s: &str) -> Result<LegacyHash, LegacyHashError> {
    let scheme = Scheme::Pbkdf2Sha256;
    let fields: Vec<&str> = s.split('$').collect();
    let canonical = match fields[..] {
        // passlib: $pbkdf2-sha256$<rounds>$<salt>$<hash>, adapted base64.
        ["", ident, rounds, salt, out] if rounds.bytes().all(|b| b.is_ascii_digit()) => {
            let rounds: u32 = rounds
                .parse()
                .map_err(|_| malformed(scheme, "the rounds are not a number"))?;
            let out = from_passlib_b64(out);
            let len = base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(&out)
                .map_err(|_| malformed(scheme, "the hash is not adapted base64"))?
                .len();
            format!(
                "${ident}$i={rounds},l={len}${}${out}",
                from_passlib_b64(salt)
            )
        }
        _ => s.to_owned(),
    };
    let hash = phc(scheme, &canonical)?;
    let params = pbkdf2::Params::try_from(&hash).map_err(|_| {
        malformed(
            scheme,
            "bad parameters: expected i=<iterations>,l=<hash length in bytes>",
        )
    })?;
    if params.rounds == 0 {
        return Err(malformed(scheme, "0 iterations"));
    }
    check(
        scheme,
        "iterations (i)",
        params.rounds.into(),
        MAX_PBKDF2_ITERATIONS.into(),
    )?;
    Ok(LegacyHash {
        scheme,
        stored: canonical,
        firebase: None,
    })
}

fn parse_firebase_stored(s: &str) -> Result<LegacyHash, LegacyHashError> {
    let scheme = Scheme::FirebaseScrypt;
    let fields: Vec<&str> = s.split('$').collect();
    let ["", _, params, separator, signer_key, salt, hash] = fields[..] else {
        return Err(malformed(
            scheme,
            "expected $firebase-scrypt$rounds=<r>,mem_cost=<m>$<salt separator>$<signer key>$\
             <salt>$<hash>",
        ));
    };
    let mut rounds = None;
    let mut mem_cost = None;
    for kv in params.split(',') {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        // The key is named only once it is known to be one: a shifted field (a salt or a
        // digest where the parameters belong) must not be quoted in an error.
        let slot = match k {
            "rounds" => &mut rounds,
            "mem_cost" => &mut mem_cost,
            _ => {
                return Err(malformed(
                    scheme,
                    "parameters other than rounds and mem_cost",
                ));
            }
        };
        let v: u32 = v
            .parse()
            .map_err(|_| malformed(scheme, format!("`{k}` is not a number")))?;
        *slot = Some(v);
    }
    let (Some(rounds), Some(mem_cost)) = (rounds, mem_cost) else {
        return Err(malformed(scheme, "rounds and mem_cost are both required"));
    };
    let project = FirebaseParams {
        signer_key: signer_key.to_owned(),
        salt_separator: separator.to_owned(),
        rounds,
        mem_cost,
    };
    LegacyHash::firebase_scrypt(hash, salt, &project)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cost arithmetic the caps rest on.
    #[test]
    fn scrypt_memory_is_128_n_r() {
        assert_eq!(scrypt_memory(14, 8), 16 * 1024 * 1024);
        assert_eq!(scrypt_memory(17, 8), MAX_MEMORY_BYTES);
        assert_eq!(scrypt_memory(56, 1), 1 << 63);
        assert_eq!(scrypt_memory(57, 1), u64::MAX);
        assert_eq!(scrypt_memory(63, 8), u64::MAX);
        assert_eq!(scrypt_memory(64, 1), u64::MAX);
    }

    #[test]
    fn debug_never_shows_the_hash_or_the_signer_key() {
        let h = LegacyHash::parse("$2b$04$abcdefghijklmnopqrstuuJ3dGIpzGdyPLAzSH0iqwv3JAI7/fGS.")
            .unwrap();
        let shown = format!("{h:?}");
        assert!(
            shown.contains("Bcrypt") && !shown.contains("abcdefghij"),
            "{shown}"
        );
        let p = FirebaseParams {
            signer_key: "c2VjcmV0LWtleQ==".into(),
            salt_separator: "Bw==".into(),
            rounds: 8,
            mem_cost: 14,
        };
        assert!(!format!("{p:?}").contains("c2VjcmV0"));
    }

    /// What `passwords.rs` logs when a stored hash no longer parses: the error never quotes the
    /// salt or the digest, wherever they sit in a broken string.
    #[test]
    fn errors_never_quote_a_salt_or_a_digest() {
        let salt = "c2FsdHNhbHRzYWx0c2FsdA";
        let digest = "ZGlnZXN0ZGlnZXN0ZGlnZXN0ZGlnZXN0";
        let hex = "5f4dcc3b5aa765d61d8327deb882cf99";
        let mut refused = 0;
        for broken in [
            format!("$argon2id$v=19$m=65536,t=2,p=1${salt}"),
            format!("$argon2id$v=19$m=65536,t=2,p=1$!{salt}${digest}"),
            format!("$argon2id$v=19$m=65536,t=2,p=1,{salt}=1${salt}${digest}"),
            format!("$scrypt$ln=15,r=8,p=1${salt}"),
            format!("$pbkdf2-sha256$i=0${salt}${digest}"),
            format!("$2b$04${salt}"),
            format!("$2b$4${salt}{digest}"),
            format!("${hex}"),
            format!("$md5${salt}${digest}"),
            format!("{salt}${digest}"),
            format!("$firebase-scrypt${salt}=8${salt}${digest}"),
            format!("$firebase-scrypt$rounds={salt}${salt}${digest}"),
        ] {
            let Err(e) = LegacyHash::parse(&broken) else {
                panic!("{broken:?} parsed");
            };
            refused += 1;
            let text = e.to_string();
            for secret in [salt, digest, hex] {
                assert!(!text.contains(secret), "{broken:?} -> {text}");
            }
        }
        assert_eq!(refused, 12);
    }
}

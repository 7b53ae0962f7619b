//! Importing users from another system (#24): the line format (docs/SERVER.md, "Importing
//! users"), its parsing, and the plan of one line's writes against what is stored.
//!
//! An import is newline-delimited JSON, one user a line; the CLI (`sessionkit-server import`)
//! streams a file through it in batches of [`MAX_BATCH`] lines and the admin API
//! (`POST .../users/import`) takes one batch. Each line is parsed here into an [`ImportUser`]
//! (every error names the line and what is wrong), then each store imports it in one
//! transaction: it reads what is stored ([`Existing`]), [`plan`] decides (created, updated,
//! unchanged, or refused with the reason) and lists the writes, and the store makes them.
//! The decision is made once, here, for both back ends.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::legacy_hashes::{FirebaseParams, LegacyHash};
use crate::passwords::StoredPassword;
pub use crate::store::import::{
    Existing, ImportAccount, ImportIdentity, ImportUser, Imported, Plan, USERPASS, Write, plan,
    previous_email,
};

/// The most lines one batch holds (the CLI's batches, and an admin API request).
pub const MAX_BATCH: usize = 1000;
/// The longest line read, in bytes: a user's line is small; a longer one is refused without
/// being kept in memory whole.
pub const MAX_LINE_BYTES: usize = 256 * 1024;
/// The most bytes of lines the CLI gathers before importing them (a batch is also cut at
/// [`MAX_BATCH`] lines): with long lines, what a batch holds stays a few MiB.
pub const MAX_BATCH_BYTES: usize = 4 * 1024 * 1024;
/// The longest user id or identity id accepted, in characters.
pub const MAX_ID_CHARS: usize = 256;

/// A line of a batch: its number (1-based, in the file or request) and what it holds.
#[derive(Debug)]
pub enum Line {
    /// A user to import.
    User(u64, ImportUser),
    /// A line refused before the store saw it (unreadable, or not a valid user), with why.
    Refused(u64, String),
}

/// The report of an import (CLI and admin API).
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Report {
    /// New users.
    pub created: u64,
    /// Existing users changed.
    pub updated: u64,
    /// Existing users already as their line says.
    pub unchanged: u64,
    /// Lines refused.
    pub refused: u64,
    /// Whether nothing was written (a dry run).
    pub dry_run: bool,
    /// Each refused line with the reason, in line order.
    pub refusals: Vec<Refusal>,
}

/// A refused line.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Refusal {
    /// Its number (1-based).
    pub line: u64,
    /// Why, naming the field or the other user.
    pub reason: String,
}

impl Report {
    /// Counts one line's result.
    pub fn add(&mut self, line: u64, result: Result<Imported, String>) {
        match result {
            Ok(Imported::Created) => self.created += 1,
            Ok(Imported::Updated) => self.updated += 1,
            Ok(Imported::Unchanged) => self.unchanged += 1,
            Err(reason) => {
                self.refused += 1;
                self.refusals.push(Refusal { line, reason });
            }
        }
    }

    /// `created N, updated N, unchanged N, refused N`.
    pub fn summary(&self) -> String {
        format!(
            "created {}, updated {}, unchanged {}, refused {}",
            self.created, self.updated, self.unchanged, self.refused
        )
    }
}

// ---- The line format (docs/SERVER.md, "Importing users") ----

/// `Some` for a field that is present (even `null`), `None` (the default) when absent.
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserLine {
    id: String,
    #[serde(default)]
    disabled: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    custom_data: Option<Value>,
    #[serde(default)]
    created_at: Option<Value>,
    #[serde(default)]
    identities: Vec<IdentityLine>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IdentityLine {
    provider_type: String,
    id: String,
    #[serde(default)]
    profile_data: Option<Map<String, Value>>,
    #[serde(default)]
    password_hash: Option<String>,
    #[serde(default)]
    firebase_scrypt: Option<FirebaseHashLine>,
    #[serde(default)]
    must_reset: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FirebaseHashLine {
    hash: String,
    salt: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ParamsLine {
    firebase_params: FirebaseParamsLine,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FirebaseParamsLine {
    #[serde(alias = "base64_signer_key")]
    signer_key: String,
    #[serde(alias = "base64_salt_separator")]
    salt_separator: String,
    rounds: u32,
    mem_cost: u32,
}

/// Reads the lines of one import in order: keeps the Firebase project parameters a
/// `{"firebase_params": …}` line gives for the lines after it.
#[derive(Default)]
pub struct Reader {
    firebase: Option<FirebaseParams>,
}

/// serde's message with quoted values left out: a value in the wrong field may be a hash.
fn serde_message(e: &serde_json::Error) -> String {
    // A line is one line of text: its column is what locates the error.
    let text = e.to_string().replace(" at line 1 column ", " at column ");
    let mut out = String::with_capacity(text.len());
    let mut quoted = false;
    for c in text.chars() {
        if c == '"' {
            if !quoted {
                out.push_str("\"…\"");
            }
            quoted = !quoted;
        } else if !quoted {
            out.push(c);
        }
    }
    out
}

fn check_id(what: &str, id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err(format!("{what} is empty"));
    }
    if id.chars().count() > MAX_ID_CHARS {
        return Err(format!("{what} is longer than {MAX_ID_CHARS} characters"));
    }
    if id.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(format!("{what} contains a space or a control character"));
    }
    Ok(())
}

/// `created_at`: RFC 3339 text or Unix seconds (an integer ≥ 0).
fn created_at(v: &Value) -> Result<i64, String> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .filter(|s| *s >= 0)
            .ok_or_else(|| "created_at: seconds must be a whole number ≥ 0".to_string()),
        Value::String(s) => {
            time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .map(|t| t.unix_timestamp())
                .map_err(|e| format!("created_at: not an RFC 3339 time ({e})"))
                .and_then(|t| {
                    (t >= 0)
                        .then_some(t)
                        .ok_or_else(|| "created_at: before 1970".to_string())
                })
        }
        _ => Err("created_at must be an RFC 3339 string or Unix seconds".into()),
    }
}

impl Reader {
    /// A reader with no Firebase parameters yet.
    pub fn new() -> Reader {
        Reader::default()
    }

    /// Parses line `n` (1-based): `None` for a blank line or a parameters line (which sets
    /// the Firebase parameters for the lines after it), else the user or why it is refused.
    pub fn line(&mut self, n: u64, text: &str) -> Option<Line> {
        let text = text.trim();
        if text.is_empty() {
            return None;
        }
        let value: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => return Some(Line::Refused(n, format!("not JSON: {}", serde_message(&e)))),
        };
        self.value(n, value)
    }

    /// As [`Reader::line`], for a line already read as JSON (an admin API array's element).
    pub fn value(&mut self, n: u64, value: Value) -> Option<Line> {
        if value.get("firebase_params").is_some() {
            return match serde_json::from_value::<ParamsLine>(value) {
                Ok(p) => {
                    let p = p.firebase_params;
                    self.firebase = Some(FirebaseParams {
                        signer_key: p.signer_key,
                        salt_separator: p.salt_separator,
                        rounds: p.rounds,
                        mem_cost: p.mem_cost,
                    });
                    None
                }
                Err(e) => Some(Line::Refused(
                    n,
                    format!("firebase_params line: {}", serde_message(&e)),
                )),
            };
        }
        Some(match self.user(value) {
            Ok(u) => Line::User(n, u),
            Err(reason) => Line::Refused(n, reason),
        })
    }

    fn user(&self, value: Value) -> Result<ImportUser, String> {
        if !value.is_object() {
            return Err("a line must be a JSON object (one user)".into());
        }
        let line: UserLine = serde_json::from_value(value).map_err(|e| serde_message(&e))?;
        check_id("id", &line.id)?;
        let custom_data = match line.custom_data {
            None => None,
            Some(Value::Null) => Some(None),
            Some(Value::Object(m)) => Some(Some(m)),
            Some(_) => return Err("custom_data must be a JSON object or null".into()),
        };
        let created_at = line.created_at.as_ref().map(created_at).transpose()?;
        let mut identities: Vec<ImportIdentity> = Vec::with_capacity(line.identities.len());
        for (i, ident) in line.identities.into_iter().enumerate() {
            let ident = self
                .identity(ident)
                .map_err(|e| format!("identities[{i}]: {e}"))?;
            if identities.iter().any(|o| {
                o.provider_type == ident.provider_type && o.external_id == ident.external_id
            }) {
                return Err(format!(
                    "identities[{i}]: {} identity {} is listed twice",
                    ident.provider_type, ident.external_id
                ));
            }
            if ident.account.is_some() && identities.iter().any(|o| o.account.is_some()) {
                return Err(format!(
                    "identities[{i}]: a user has at most one {USERPASS} identity"
                ));
            }
            identities.push(ident);
        }
        Ok(ImportUser {
            id: line.id,
            disabled: line.disabled,
            custom_data,
            created_at,
            identities,
        })
    }

    fn identity(&self, line: IdentityLine) -> Result<ImportIdentity, String> {
        let pt = line.provider_type.as_str();
        check_id("provider_type", pt)?;
        check_id("id", &line.id)?;
        match pt {
            "api-key" => {
                return Err(
                    "api-key identities are not imported: an export holds no API \
                            key (keys are kept hashed); the user makes new keys"
                        .into(),
                );
            }
            "anon-user" => {
                return Err(
                    "anon-user identities are not imported: an anonymous user is \
                            tied to one device's session, which an import cannot bring"
                        .into(),
                );
            }
            _ => {}
        }
        let has_password =
            line.password_hash.is_some() || line.firebase_scrypt.is_some() || line.must_reset;
        if pt != USERPASS {
            if has_password {
                return Err(format!(
                    "only a {USERPASS} identity has password_hash, firebase_scrypt or must_reset"
                ));
            }
            return Ok(ImportIdentity {
                provider_type: line.provider_type,
                external_id: line.id,
                data: line.profile_data,
                account: None,
            });
        }
        let mut data = line.profile_data.unwrap_or_default();
        let email = match data.remove("email") {
            Some(Value::String(e)) => {
                crate::email::canonical(&e).map_err(|e| format!("profile_data.email: {}", e.0))?
            }
            Some(_) => return Err("profile_data.email must be a string".into()),
            None => return Err(format!("a {USERPASS} identity needs profile_data.email")),
        };
        if let Some(k) = data.keys().next() {
            return Err(format!(
                "profile_data.{k}: a {USERPASS} identity's profile is its email only"
            ));
        }
        let password = match (line.password_hash, line.firebase_scrypt, line.must_reset) {
            (Some(h), None, false) => StoredPassword::Legacy(
                LegacyHash::parse(&h).map_err(|e| format!("password_hash: {e}"))?,
            ),
            (None, Some(f), false) => {
                let params = self.firebase.as_ref().ok_or(
                    "firebase_scrypt needs the Firebase project's parameters: put a \
                     {\"firebase_params\": {\"signer_key\", \"salt_separator\", \"rounds\", \
                     \"mem_cost\"}} line before it",
                )?;
                StoredPassword::Legacy(
                    LegacyHash::firebase_scrypt(&f.hash, &f.salt, params)
                        .map_err(|e| format!("firebase_scrypt: {e}"))?,
                )
            }
            (None, None, true) => StoredPassword::MustReset,
            (None, None, false) => {
                return Err(format!(
                    "a {USERPASS} identity needs password_hash, firebase_scrypt or \
                     \"must_reset\": true"
                ));
            }
            _ => {
                return Err(
                    "password_hash, firebase_scrypt and must_reset exclude each other".into(),
                );
            }
        };
        let mut profile = Map::new();
        profile.insert("email".into(), Value::String(email.clone()));
        Ok(ImportIdentity {
            provider_type: line.provider_type,
            external_id: line.id,
            data: Some(profile),
            account: Some(ImportAccount {
                email,
                password: password.to_column(),
            }),
        })
    }
}

/// Imports a batch of read lines through `store` and counts each in `report`, in line order.
/// Lines refused when read are counted without reaching the store.
pub async fn run_batch(
    store: &dyn crate::store::Store,
    app_id: &str,
    lines: Vec<Line>,
    dry_run: bool,
    now: i64,
    report: &mut Report,
) -> crate::store::StoreResult<()> {
    let mut order = Vec::with_capacity(lines.len());
    let mut users = Vec::new();
    for line in lines {
        match line {
            Line::User(n, u) => {
                order.push((n, None));
                users.push(u);
            }
            Line::Refused(n, reason) => order.push((n, Some(reason))),
        }
    }
    let mut results = store
        .import_users(app_id, users, dry_run, now)
        .await?
        .into_iter();
    for (n, refused) in order {
        let result = match refused {
            Some(reason) => Err(reason),
            None => results
                .next()
                .ok_or_else(crate::error::ApiError::internal)?,
        };
        report.add(n, result);
    }
    Ok(())
}

/// The lines of an admin API request's body: a JSON array of lines (numbered from 1), or
/// newline-delimited JSON (numbered by line). 400 when it holds more than [`MAX_BATCH`] lines
/// or is neither.
pub fn request_lines(body: &[u8]) -> Result<Vec<Line>, crate::error::ApiError> {
    use crate::error::ApiError;
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::bad_request("the body is not UTF-8 text"))?;
    let too_many = || {
        ApiError::bad_request(format!(
            "at most {MAX_BATCH} lines a request: send the rest in further requests"
        ))
    };
    let mut reader = Reader::new();
    let mut lines = Vec::new();
    if text.trim_start().starts_with('[') {
        let values: Vec<Value> = serde_json::from_str(text).map_err(|e| {
            ApiError::bad_request(format!(
                "the body is not a JSON array of lines: {}",
                serde_message(&e)
            ))
        })?;
        if values.len() > MAX_BATCH {
            return Err(too_many());
        }
        for (i, v) in values.into_iter().enumerate() {
            lines.extend(reader.value(i as u64 + 1, v));
        }
    } else {
        for (i, text) in text.lines().enumerate() {
            lines.extend(reader.line(i as u64 + 1, text));
            if lines.len() > MAX_BATCH {
                return Err(too_many());
            }
        }
    }
    Ok(lines)
}

/// Imports a file of lines (`sessionkit-server import`): reads it line by line (no line longer
/// than [`MAX_LINE_BYTES`] is kept whole), imports it in batches of [`MAX_BATCH`] lines or
/// [`MAX_BATCH_BYTES`], and hands
/// each batch's refusals to `refused` as they come, so that memory stays bounded whatever the
/// file's size. The counts (its `refusals` empty).
pub async fn run_file(
    store: &dyn crate::store::Store,
    app_id: &str,
    input: impl std::io::BufRead,
    dry_run: bool,
    now: impl Fn() -> i64,
    mut refused: impl FnMut(&Refusal),
) -> Result<Report, String> {
    let mut report = Report {
        dry_run,
        ..Report::default()
    };
    let mut reader = Reader::new();
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut input = input;
    let mut n = 0u64;
    let mut buf = Vec::new();
    let mut batch_bytes = 0;
    loop {
        buf.clear();
        let (read, whole) = read_bounded_line(&mut input, &mut buf)
            .map_err(|e| format!("cannot read the file after line {n}: {e}"))?;
        if read == 0 {
            break;
        }
        n += 1;
        let line = if !whole {
            Some(Line::Refused(
                n,
                format!("longer than {MAX_LINE_BYTES} bytes"),
            ))
        } else {
            match std::str::from_utf8(&buf) {
                Ok(text) => reader.line(n, text),
                Err(_) => Some(Line::Refused(n, "not UTF-8 text".into())),
            }
        };
        batch_bytes += buf.len();
        batch.extend(line);
        if batch.len() >= MAX_BATCH || batch_bytes >= MAX_BATCH_BYTES {
            batch_bytes = 0;
            let lines = std::mem::take(&mut batch);
            run_batch(store, app_id, lines, dry_run, now(), &mut report)
                .await
                .map_err(|e| format!("import stopped at line {n}: {}", e.message))?;
            report.refusals.drain(..).for_each(|r| refused(&r));
        }
    }
    if !batch.is_empty() {
        run_batch(store, app_id, batch, dry_run, now(), &mut report)
            .await
            .map_err(|e| format!("import stopped at line {n}: {}", e.message))?;
        report.refusals.drain(..).for_each(|r| refused(&r));
    }
    Ok(report)
}

/// Reads one line into `buf` (without its end), keeping at most [`MAX_LINE_BYTES`] of it:
/// the bytes consumed (0 at the end), and whether the line was kept whole.
fn read_bounded_line(
    input: &mut impl std::io::BufRead,
    buf: &mut Vec<u8>,
) -> std::io::Result<(usize, bool)> {
    let mut consumed = 0;
    let mut whole = true;
    loop {
        let available = input.fill_buf()?;
        if available.is_empty() {
            return Ok((consumed, whole));
        }
        let (chunk, done) = match available.iter().position(|b| *b == b'\n') {
            Some(i) => (&available[..i], Some(i + 1)),
            None => (available, None),
        };
        if buf.len() + chunk.len() <= MAX_LINE_BYTES {
            buf.extend_from_slice(chunk);
        } else {
            whole = false;
        }
        let used = done.unwrap_or(chunk.len());
        consumed += used;
        input.consume(used);
        if done.is_some() {
            return Ok((consumed, whole));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(text: &str) -> Result<ImportUser, String> {
        match Reader::new().line(7, text) {
            Some(Line::User(7, u)) => Ok(u),
            Some(Line::Refused(7, r)) => Err(r),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn errors_name_the_field_and_never_quote_a_value() {
        let e = read(r#"{"id":"a","disabled":"$2b$04$secret"}"#).unwrap_err();
        assert!(!e.contains("secret"), "{e}");
        assert!(e.contains("boolean"), "{e}");
        let e = read(r#"{"id":"a","passwordHash":"x"}"#).unwrap_err();
        assert!(e.contains("passwordHash"), "{e}");
        let e = read(r#"{"id":"a","identities":[{"provider_type":"local-userpass","id":"i","profile_data":{"email":"a@example.com"}}]}"#).unwrap_err();
        assert!(e.starts_with("identities[0]: "), "{e}");
        assert!(e.contains("must_reset"), "{e}");
        let e = read(r#"{"id":"a","identities":[{"provider_type":"local-userpass","id":"i","profile_data":{"email":"a@example.com"},"password_hash":"$md5$x"}]}"#).unwrap_err();
        assert!(e.contains("password_hash: unsupported"), "{e}");
        let e = read(r#"{"id":"a","identities":[{"provider_type":"local-userpass","id":"i","profile_data":{"email":"a@example.com"},"firebase_scrypt":{"hash":"aGk=","salt":"aGk="}}]}"#).unwrap_err();
        assert!(e.contains("firebase_params"), "{e}");
    }

    #[test]
    fn an_overlong_line_is_refused_without_being_kept() {
        let long = "x".repeat(MAX_LINE_BYTES + 10);
        let text = format!("{long}\nshort\n");
        let mut input = std::io::BufReader::with_capacity(1024, text.as_bytes());
        let mut buf = Vec::new();
        let (n, whole) = read_bounded_line(&mut input, &mut buf).unwrap();
        assert_eq!((n, whole), (MAX_LINE_BYTES + 11, false));
        assert!(buf.len() <= MAX_LINE_BYTES);
        buf.clear();
        assert_eq!(read_bounded_line(&mut input, &mut buf).unwrap(), (6, true));
        assert_eq!(buf, b"short");
    }

    #[test]
    fn created_at_takes_rfc3339_or_seconds() {
        let u = read(r#"{"id":"a","created_at":"2021-03-04T05:06:07Z"}"#).unwrap();
        assert_eq!(u.created_at, Some(1_614_834_367));
        let u = read(r#"{"id":"a","created_at":1614834367}"#).unwrap();
        assert_eq!(u.created_at, Some(1_614_834_367));
        assert!(read(r#"{"id":"a","created_at":"yesterday"}"#).is_err());
        assert!(read(r#"{"id":"a","created_at":-5}"#).is_err());
    }

    #[test]
    fn custom_data_absent_keeps_and_null_clears() {
        assert!(read(r#"{"id":"a"}"#).unwrap().custom_data.is_none());
        assert_eq!(
            read(r#"{"id":"a","custom_data":null}"#)
                .unwrap()
                .custom_data,
            Some(None)
        );
        assert!(read(r#"{"id":"a","custom_data":[1]}"#).is_err());
    }

    #[test]
    fn a_params_line_sets_firebase_parameters_for_later_lines() {
        let mut r = Reader::new();
        assert!(r
            .line(1, r#"{"firebase_params":{"signer_key":"c2VjcmV0","salt_separator":"Bw==","rounds":8,"mem_cost":14}}"#)
            .is_none());
        let line = r.line(2, r#"{"id":"a","identities":[{"provider_type":"local-userpass","id":"i","profile_data":{"email":"A@Example.com"},"firebase_scrypt":{"hash":"c2VjcmVu","salt":"aGk="}}]}"#);
        let Some(Line::User(2, u)) = line else {
            panic!("{line:?}")
        };
        let account = u.identities[0].account.as_ref().unwrap();
        assert_eq!(account.email, "a@example.com");
        assert!(format!("{account:?}").find("firebase").is_none());
    }
}

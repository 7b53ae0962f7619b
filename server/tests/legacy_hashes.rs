//! Legacy password hashes an import brings (#24): hashes made by other implementations
//! (fixtures/legacy-hashes/vectors.json, written by generate.py beside it with argon2-cffi,
//! Python's bcrypt, hashlib, passlib and cryptography, plus Firebase's published example)
//! verify with their password and refuse others; malformed and too costly hashes are refused
//! when parsed, with messages that name the field or the limit.

use std::collections::HashMap;

use serde_json::Value;
use sessionkit_server::legacy_hashes::{
    FirebaseParams, LegacyHash, LegacyHashError, MAX_BCRYPT_COST, MAX_MEMORY_BYTES, Scheme,
};
use sessionkit_server::passwords::Passwords;

fn vectors() -> Vec<Value> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/legacy-hashes/vectors.json"
    );
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    doc["vectors"].as_array().unwrap().clone()
}

fn s(v: &Value, key: &str) -> String {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} in {v}"))
        .to_owned()
}

fn project(v: &Value) -> FirebaseParams {
    let p = &v["project"];
    FirebaseParams {
        signer_key: s(p, "signer_key"),
        salt_separator: s(p, "salt_separator"),
        rounds: p["rounds"].as_u64().unwrap() as u32,
        mem_cost: p["mem_cost"].as_u64().unwrap() as u32,
    }
}

/// The vector's hash, parsed as an import would: a PHC or crypt string, or Firebase's hash and
/// salt with its project's parameters.
fn legacy(v: &Value) -> LegacyHash {
    let parsed = match s(v, "scheme").as_str() {
        "firebase-scrypt" => LegacyHash::firebase_scrypt(&s(v, "hash"), &s(v, "salt"), &project(v)),
        _ => LegacyHash::parse(&s(v, "hash")),
    };
    parsed.unwrap_or_else(|e| panic!("{}: {e}", s(v, "made_by")))
}

/// Passwords a vector must refuse: one character changed, one added (in front: bcrypt reads
/// only 72 bytes), one removed, empty.
fn wrong(password: &str) -> Vec<String> {
    let mut changed: Vec<char> = password.chars().collect();
    changed[0] = if changed[0] == 'a' { 'b' } else { 'a' };
    let mut shorter = password.to_owned();
    shorter.pop();
    vec![
        changed.into_iter().collect(),
        format!("!{password}"),
        shorter,
        String::new(),
    ]
}

#[tokio::test]
async fn every_vector_verifies_its_password_and_refuses_others() {
    // Both cores: each vector's checks run as one task, through the pool as logins do.
    let pool = std::sync::Arc::new(Passwords::new(2, 64));
    let mut per_scheme: HashMap<String, usize> = HashMap::new();
    let mut checks = tokio::task::JoinSet::new();
    for v in vectors() {
        *per_scheme.entry(s(&v, "scheme")).or_default() += 1;
        let pool = pool.clone();
        checks.spawn(async move {
            let made_by = s(&v, "made_by");
            let password = s(&v, "password");
            let hash = legacy(&v);
            assert_eq!(hash.scheme().as_str(), s(&v, "scheme"), "{made_by}");
            assert!(
                pool.verify_legacy(password.clone(), hash.clone())
                    .await
                    .unwrap(),
                "{made_by}: its password was refused"
            );
            for w in wrong(&password) {
                // Refused the same way whatever the scheme: Ok(false).
                assert!(
                    !pool.verify_legacy(w.clone(), hash.clone()).await.unwrap(),
                    "{made_by}: {w:?} was accepted"
                );
            }
            // What the store keeps reads back to a hash that still verifies.
            let stored = LegacyHash::parse(hash.as_stored())
                .unwrap_or_else(|e| panic!("{made_by}: stored form refused: {e}"));
            assert_eq!(stored.scheme(), hash.scheme());
            let ok = pool.verify_legacy(password, stored.clone()).await.unwrap();
            assert!(ok, "{made_by}: stored form");
        });
    }
    while let Some(done) = checks.join_next().await {
        done.unwrap();
    }
    // A fixture cut short must not pass: every scheme, every variant generate.py writes.
    let expected = [
        ("argon2", 7),
        ("bcrypt", 5),
        ("scrypt", 3),
        ("pbkdf2-sha256", 3),
        ("firebase-scrypt", 3),
    ];
    for (scheme, n) in expected {
        assert_eq!(per_scheme.get(scheme), Some(&n), "{scheme}: {per_scheme:?}");
    }
}

/// Firebase's own example, from firebase/scrypt README.md ("Password Hashing": the sample
/// `hash_config`, the exported user1@test.com row and the expected output), copied as
/// published.
#[test]
fn firebase_published_example() {
    let project = FirebaseParams {
        signer_key: "jxspr8Ki0RYycVU8zykbdLGjFQ3McFUH0uiiTvC8pVMXAn210wjLNmdZJzxUECKbm0QsEmYUSDzZvpjeJ9WmXA=="
            .into(),
        salt_separator: "Bw==".into(),
        rounds: 8,
        mem_cost: 14,
    };
    let hash = LegacyHash::firebase_scrypt(
        "lSrfV15cpx95/sZS2W9c9Kp6i/LVgQNDNC/qzrCnh1SAyZvqmZqAjTdn3aoItz+VHjoZilo78198JAdRuid5lQ==",
        "42xEC+ixf3L2lw==",
        &project,
    )
    .unwrap();
    assert_eq!(hash.scheme(), Scheme::FirebaseScrypt);
    assert!(hash.verify(b"user1password"));
    assert!(!hash.verify(b"user2password"));
    // Another project's parameters do not verify the same hash.
    for other in [
        FirebaseParams {
            salt_separator: "CA==".into(),
            ..project.clone()
        },
        FirebaseParams {
            rounds: 7,
            ..project.clone()
        },
        FirebaseParams {
            mem_cost: 13,
            ..project.clone()
        },
    ] {
        let h = LegacyHash::firebase_scrypt(
            "lSrfV15cpx95/sZS2W9c9Kp6i/LVgQNDNC/qzrCnh1SAyZvqmZqAjTdn3aoItz+VHjoZilo78198JAdRuid5lQ==",
            "42xEC+ixf3L2lw==",
            &other,
        )
        .unwrap();
        assert!(!h.verify(b"user1password"), "{other:?}");
    }
}

fn vector(made_by_starts: &str) -> Value {
    vectors()
        .into_iter()
        .find(|v| s(v, "made_by").contains(made_by_starts))
        .unwrap_or_else(|| panic!("no vector {made_by_starts}"))
}

/// bcrypt reads 72 bytes: a longer password with the same first 72 bytes is the same password
/// to every bcrypt the hashes come from, so it logs in here too.
#[test]
fn bcrypt_reads_the_first_72_bytes_as_every_bcrypt_does() {
    let v = vector("72-byte password");
    let hash = legacy(&v);
    let password = s(&v, "password");
    assert_eq!(password.len(), 72);
    assert!(hash.verify(format!("{password}anything after").as_bytes()));
    assert!(!hash.verify(&password.as_bytes()[..71]));
}

/// The old system hashed the password as the user's device sent it. That spelling verifies as
/// it is; a hash of the NFC spelling also accepts the NFD one, because the pool tries the
/// prepared (RFC 8265, NFC) form too.
#[tokio::test]
async fn unicode_passwords_verify_as_sent_and_as_prepared() {
    let pool = Passwords::new(1, 8);
    let nfd = vector("argon2-cffi 25.1.0 unicode");
    let nfc = vector("unicode, NFC spelling");
    let (nfd_password, nfc_password) = (s(&nfd, "password"), s(&nfc, "password"));
    assert_ne!(nfd_password, nfc_password);
    let nfc_hash = legacy(&nfc);
    assert!(!nfc_hash.verify(nfd_password.as_bytes()));
    assert!(pool.verify_legacy(nfd_password, nfc_hash).await.unwrap());
    assert!(
        pool.verify_legacy(s(&nfd, "password"), legacy(&nfd))
            .await
            .unwrap()
    );
}

fn refused(input: &str) -> LegacyHashError {
    match LegacyHash::parse(input) {
        Ok(h) => panic!("{input} was accepted as {:?}", h.scheme()),
        Err(e) => e,
    }
}

const SALT: &str = "c2FsdHNhbHRzYWx0c2FsdA";
const OUT: &str = "ZxiLuNeEe0eYjg9mztZrOM4T/5LJdnDugAGyhXn4WPI";

#[test]
fn other_schemes_are_refused_naming_what_was_found() {
    for (input, found) in [
        ("$1$saltsalt$hashhashhashhashhashha", "scheme `$1$`"),
        ("$md5$rounds=904$salt$hash", "scheme `$md5$`"),
        (
            "$pbkdf2-sha512$i=1000,l=64$salt$hash",
            "scheme `$pbkdf2-sha512$`",
        ),
        (
            "5f4dcc3b5aa765d61d8327deb882cf99",
            "does not start with `$`",
        ),
        ("", "does not start with `$`"),
        // A digest after a lone `$` is not quoted back (import reports and logs show errors).
        (
            "$Q2hhbmdlZCBzZWNyZXQgZGlnZXN0IGJ5dGVz",
            "not a scheme's name",
        ),
        // Nor a lowercase hex digest, which reads like a name.
        ("$5f4dcc3b5aa765d61d8327deb882cf99", "not a scheme's name"),
        (
            "$2x$04$HYHT1niOLkZGaID45OweUOiYvDwiXLeIw0Y9qkcqdgZFZrblwQTiq",
            "bcrypt variant `$2x$`",
        ),
    ] {
        let e = refused(input);
        assert!(
            matches!(e, LegacyHashError::Unsupported { .. }),
            "{input}: {e:?}"
        );
        let msg = e.to_string();
        assert!(msg.contains(found), "{input}: {msg}");
        assert!(msg.contains("must_reset"), "{msg}");
        if input.len() > 20 {
            let tail = &input[input.len() - 12..];
            assert!(!msg.contains(tail), "{input} quoted: {msg}");
        }
    }
}

#[test]
fn malformed_hashes_are_refused_naming_the_field() {
    let bcrypt = "$2b$04$HYHT1niOLkZGaID45OweUOiYvDwiXLeIw0Y9qkcqdgZFZrblwQTiq";
    let cases: Vec<(String, Scheme, &str)> = vec![
        (bcrypt[..40].into(), Scheme::Bcrypt, "not 53 characters"),
        (
            bcrypt.replace("$04$", "$4$"),
            Scheme::Bcrypt,
            "not two digits",
        ),
        (bcrypt.replace("$04$", "$03$"), Scheme::Bcrypt, "below 4"),
        (
            bcrypt.replace('H', "#"),
            Scheme::Bcrypt,
            "not 53 characters",
        ),
        ("$2b$04".into(), Scheme::Bcrypt, "expected $2b$<cost>$"),
        (
            format!("$argon2id$v=19$m=1024,t=2,p=1${SALT}"),
            Scheme::Argon2,
            "no hash",
        ),
        (
            format!("$argon2id$v=19$m=1024,t=2,p=1$${OUT}"),
            Scheme::Argon2,
            "not a PHC string",
        ),
        (
            format!("$argon2id$v=19$m=1024,t=2,p=1$c2Fsd*Rz${OUT}"),
            Scheme::Argon2,
            "not a PHC string",
        ),
        (
            format!("$argon2id$v=19$m=1024,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdB${OUT}"),
            Scheme::Argon2,
            "the salt is not B64",
        ),
        (
            format!("$argon2id$v=18$m=1024,t=2,p=1${SALT}${OUT}"),
            Scheme::Argon2,
            "unknown version v=18",
        ),
        (
            format!("$argon2id$v=19$m=1024,t=2,p=1,x=3${SALT}${OUT}"),
            Scheme::Argon2,
            "bad parameters",
        ),
        (
            format!("$argon2id$v=19$m=1,t=2,p=1${SALT}${OUT}"),
            Scheme::Argon2,
            "bad parameters",
        ),
        (
            format!("$argon2id$v=19$m=1024,t=2,p=1,keyid=AAAA${SALT}${OUT}"),
            Scheme::Argon2,
            "keyed hash",
        ),
        (
            format!("$scrypt$ln=14,r=8,p=1,x=1${SALT}${OUT}"),
            Scheme::Scrypt,
            "bad parameters",
        ),
        (
            format!("$scrypt$ln=14,r=0,p=1${SALT}${OUT}"),
            Scheme::Scrypt,
            "bad parameters",
        ),
        (
            format!("$scrypt$ln=14,r=8,p=1${SALT}"),
            Scheme::Scrypt,
            "no hash",
        ),
        (
            format!("$pbkdf2-sha256$i=1000,l=16${SALT}${OUT}"),
            Scheme::Pbkdf2Sha256,
            "bad parameters",
        ),
        (
            format!("$pbkdf2-sha256$i=0,l=32${SALT}${OUT}"),
            Scheme::Pbkdf2Sha256,
            "0 iterations",
        ),
        (
            format!("$pbkdf2-sha256$29000${SALT}$not*b64"),
            Scheme::Pbkdf2Sha256,
            "not adapted base64",
        ),
        (
            format!("$pbkdf2-sha256$99999999999${SALT}${OUT}"),
            Scheme::Pbkdf2Sha256,
            "not a number",
        ),
        (
            "$firebase-scrypt$rounds=8,mem_cost=14$Bw==$a2V5$c2FsdA==".into(),
            Scheme::FirebaseScrypt,
            "expected $firebase-scrypt$",
        ),
        (
            "$firebase-scrypt$rounds=8$Bw==$a2V5$c2FsdA==$a2V5".into(),
            Scheme::FirebaseScrypt,
            "both required",
        ),
        (
            "$firebase-scrypt$rounds=8,mem_cost=14$Bw==$a2V5$c2FsdA==$a2V5a2V5".into(),
            Scheme::FirebaseScrypt,
            "as long as the project's signer key",
        ),
        (
            "$firebase-scrypt$rounds=8,mem_cost=14$Bw==$a2V5$c2F*dA==$a2V5".into(),
            Scheme::FirebaseScrypt,
            "the salt is not base64",
        ),
        (
            "$firebase-scrypt$rounds=0,mem_cost=14$Bw==$a2V5$c2FsdA==$a2V5".into(),
            Scheme::FirebaseScrypt,
            "at least 1",
        ),
        // The fields shifted: a salt where the parameters belong is not quoted back.
        (
            format!("$firebase-scrypt${SALT}$Bw==$a2V5$c2FsdA==$a2V5"),
            Scheme::FirebaseScrypt,
            "parameters other than rounds and mem_cost",
        ),
    ];
    for (input, scheme, reason) in cases {
        match refused(&input) {
            LegacyHashError::Malformed { scheme: got, .. } if got == scheme => {}
            e => panic!("{input}: {e:?}"),
        }
        let msg = refused(&input).to_string();
        assert!(msg.contains(reason), "{input}: {msg}");
        // The message names the field; it never repeats the hash.
        assert!(!msg.contains(SALT) && !msg.contains(OUT), "{msg}");
    }
}

#[test]
fn hashes_over_the_cost_caps_are_refused_naming_the_limit() {
    let over = |input: &str, what: &str, limit: u64| {
        let e = refused(input);
        assert!(
            matches!(&e, LegacyHashError::OverLimit { what: w, limit: l, .. } if w.contains(what) && *l == limit),
            "{input}: {e:?}"
        );
        let msg = e.to_string();
        assert!(msg.contains(&format!("at most {limit}")), "{msg}");
    };
    let mib = MAX_MEMORY_BYTES / 1024;
    over(
        &format!("$argon2id$v=19$m=262144,t=1,p=1${SALT}${OUT}"),
        "memory",
        mib,
    );
    over(
        &format!("$argon2id$v=19$m=1024,t=17,p=1${SALT}${OUT}"),
        "passes",
        16,
    );
    over(
        &format!("$argon2id$v=19$m=65536,t=9,p=1${SALT}${OUT}"),
        "work",
        4 * mib,
    );
    over(
        &format!("$argon2id$v=19$m=8192,t=1,p=65${SALT}${OUT}"),
        "lanes",
        64,
    );
    over(
        "$2b$15$HYHT1niOLkZGaID45OweUOiYvDwiXLeIw0Y9qkcqdgZFZrblwQTiq",
        "cost",
        MAX_BCRYPT_COST.into(),
    );
    over(
        &format!("$scrypt$ln=18,r=8,p=1${SALT}${OUT}"),
        "memory",
        MAX_MEMORY_BYTES,
    );
    over(
        &format!("$scrypt$ln=14,r=128,p=1${SALT}${OUT}"),
        "memory",
        MAX_MEMORY_BYTES,
    );
    // 128·2^60·8 bytes wraps to 0 in 64 bits; it must not pass as small.
    over(
        "$firebase-scrypt$rounds=8,mem_cost=60$Bw==$a2V5$c2FsdA==$a2V5",
        "memory",
        MAX_MEMORY_BYTES,
    );
    over(
        &format!("$scrypt$ln=14,r=8,p=5${SALT}${OUT}"),
        "parallelism",
        4,
    );
    over(
        &format!("$pbkdf2-sha256$i=3000001,l=32${SALT}${OUT}"),
        "iterations",
        3_000_000,
    );
    over(
        &format!("$pbkdf2-sha256$3000001${SALT}${OUT}"),
        "iterations",
        3_000_000,
    );
    over(
        "$firebase-scrypt$rounds=8,mem_cost=18$Bw==$a2V5$c2FsdA==$a2V5",
        "memory",
        MAX_MEMORY_BYTES,
    );
    // At the caps, accepted.
    for ok in [
        format!("$argon2id$v=19$m=131072,t=4,p=64${SALT}${OUT}"),
        format!("$argon2id$v=19$m=1024,t=16,p=1${SALT}${OUT}"),
        "$2b$14$HYHT1niOLkZGaID45OweUOiYvDwiXLeIw0Y9qkcqdgZFZrblwQTiq".into(),
        format!("$scrypt$ln=17,r=8,p=4${SALT}${OUT}"),
        format!("$pbkdf2-sha256$i=3000000,l=32${SALT}${OUT}"),
        "$firebase-scrypt$rounds=8,mem_cost=17$Bw==$a2V5$c2FsdA==$a2V5".into(),
    ] {
        LegacyHash::parse(&ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
}

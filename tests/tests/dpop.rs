//! The core's DPoP proofs (#29) against the real server, and checked by implementations of
//! their own: the signature with p256 (the core signs with ring, the server verifies with
//! jsonwebtoken), the thumbprint with jsonwebtoken's RFC 7638 code (the core and the server
//! each have theirs).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::Verifier as _;
use serde_json::{Value, json};
use sessionkit::DpopKey;
use sessionkit_tests::{APP_ID, TestServer};
use sha2::Digest as _;

fn part(proof: &str, i: usize) -> Value {
    serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(proof.split('.').nth(i).unwrap())
            .unwrap(),
    )
    .unwrap()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Checks `proof` as RFC 9449 section 4.3 says, with p256 and jsonwebtoken's JWK code; the
/// thumbprint of its key.
fn verify_independently(
    proof: &str,
    method: &str,
    url: &str,
    access_token: Option<&str>,
) -> String {
    let header = part(proof, 0);
    assert_eq!(header["typ"], "dpop+jwt");
    assert_eq!(header["alg"], "ES256");
    assert!(header["jwk"].get("d").is_none(), "{header}");
    let x = URL_SAFE_NO_PAD
        .decode(header["jwk"]["x"].as_str().unwrap())
        .unwrap();
    let y = URL_SAFE_NO_PAD
        .decode(header["jwk"]["y"].as_str().unwrap())
        .unwrap();
    let uncompressed = [&[4u8][..], &x, &y].concat();
    let point = p256::EncodedPoint::from_bytes(&uncompressed).unwrap();
    let key = p256::ecdsa::VerifyingKey::from_encoded_point(&point).unwrap();
    let (input, sig) = proof.rsplit_once('.').unwrap();
    let sig = p256::ecdsa::Signature::from_slice(&URL_SAFE_NO_PAD.decode(sig).unwrap()).unwrap();
    key.verify(input.as_bytes(), &sig)
        .expect("the proof's signature verifies with the key in its header");
    let claims = part(proof, 1);
    assert_eq!(claims["htm"], method);
    assert_eq!(claims["htu"], url);
    assert!(claims["jti"].as_str().is_some_and(|j| j.len() >= 16));
    assert!((claims["iat"].as_i64().unwrap() - now()).abs() < 5);
    match access_token {
        Some(t) => {
            let ath = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(t.as_bytes()));
            assert_eq!(claims["ath"], ath);
        }
        None => assert!(claims.get("ath").is_none()),
    }
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(header["jwk"].clone()).unwrap();
    jwk.thumbprint(jsonwebtoken::jwk::ThumbprintHash::SHA256)
}

#[tokio::test]
async fn the_cores_proofs_bind_a_session_and_pass_the_server_and_an_independent_check() {
    let server = TestServer::start().await;
    let base = server.base_url();
    let http = reqwest::Client::new();
    let key = DpopKey::generate().unwrap();

    let login_url = format!("{base}/api/client/v2.0/app/{APP_ID}/auth/providers/anon-user/login");
    let proof = key.proof("POST", &login_url, None, None, now()).unwrap();
    assert_eq!(
        verify_independently(&proof, "POST", &login_url, None),
        key.thumbprint()
    );
    let login: Value = http
        .post(&login_url)
        .header("dpop", &proof)
        .json(&json!({}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(login["token_type"], "DPoP", "{login}");
    let access = login["access_token"].as_str().unwrap().to_string();
    let access_claims = part(&access, 1);
    assert_eq!(access_claims["cnf"]["jkt"], key.thumbprint());

    // The access token with a proof carrying its ath.
    let profile_url = format!("{base}/api/client/v2.0/auth/profile");
    let proof = key
        .proof("GET", &profile_url, Some(&access), None, now())
        .unwrap();
    verify_independently(&proof, "GET", &profile_url, Some(&access));
    let status = server
        .profile_status(&format!("DPoP {access}"), Some(&proof))
        .await;
    assert_eq!(status, 200);

    // The refresh token, with a proof and without.
    let refresh = login["refresh_token"].as_str().unwrap();
    let session_url = format!("{base}/api/client/v2.0/auth/session");
    let (status, _) = server
        .post_raw("/api/client/v2.0/auth/session", Some(refresh), None)
        .await;
    assert_eq!(status, 400);
    let proof = key.proof("POST", &session_url, None, None, now()).unwrap();
    let r = http
        .post(&session_url)
        .bearer_auth(refresh)
        .header("dpop", &proof)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

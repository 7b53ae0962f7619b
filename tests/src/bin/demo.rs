//! `make demo`: starts `sessionkit-server --dev` on a free loopback port (in this process), then
//! walks through the SDK's life cycle, printing each step: anonymous login, email/password
//! registration and login, custom user data, a forced refresh, the session-expiry callback, log
//! out, and what the server says when an old refresh token is used again.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use sessionkit::{App, AuthEvent, Credentials, SessionError, User};
use sessionkit_tests::{TestServer, unique_email};

fn step(n: u32, text: &str) {
    println!("\n{n}. {text}");
}

fn expires_in(user: &User) -> String {
    // Never print a token: its length and lifetime are enough to show what happened.
    match user.access_token() {
        Some(t) => format!("access token present ({} chars)", t.len()),
        None => "no access token".into(),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("SessionKit demo");
    let server = TestServer::dev().await;
    println!(
        "   sessionkit-server --dev is listening on {} (app id {:?})",
        server.base_url(),
        server.app_id
    );

    let (mut config, _) = server.config();
    config.clock = None; // real time in the demo
    let app = App::new(config)?;
    let _events = app.subscribe(Arc::new(|e: AuthEvent| {
        let user = e.user_id.as_deref().unwrap_or("-");
        let error = e.error.map(|e| format!(" ({e})")).unwrap_or_default();
        println!("   [event] {:?} user={user}{error}", e.kind);
    }));
    app.set_session_error_handler(Some(Arc::new(|user: User, error: SessionError| {
        println!(
            "   [session error handler] user {} must log in again: {} (server code {:?})",
            user.id(),
            error.kind,
            error.server_code
        );
    })));

    step(1, "Anonymous login");
    let anon = app.log_in(Credentials::anonymous()).await?;
    println!(
        "   user {} is {:?}; {}",
        anon.id(),
        anon.state(),
        expires_in(&anon)
    );
    let again = app.log_in(Credentials::anonymous()).await?;
    println!(
        "   logging in anonymously again reuses the same user: {}",
        again == anon
    );

    step(2, "Email/password: register, then log in");
    let email = unique_email("ada");
    app.email_password_auth()
        .register_user(&email, "correct-horse-battery")
        .await?;
    let ada = app
        .log_in(Credentials::email_password(&email, "correct-horse-battery"))
        .await?;
    println!(
        "   user {} ({}) is now current: {}",
        ada.id(),
        ada.profile().email.unwrap_or_default(),
        app.current_user() == Some(ada.clone())
    );
    println!("   users on this device: {}", app.all_users().len());

    step(
        3,
        "Custom user data (set by the admin API, read from the next access token)",
    );
    server
        .set_custom_data(&ada.id(), json!({"plan": "pro", "favoriteColor": "teal"}))
        .await;
    println!("   before refresh: {:?}", ada.custom_data_json());
    println!(
        "   after refresh_custom_data: {:?}",
        ada.refresh_custom_data().await?
    );

    step(
        4,
        "A forced token refresh, and a server function with the fresh token",
    );
    let before = server.refresh_count();
    ada.refresh_access_token().await?;
    println!(
        "   refresh requests served: {} -> {}",
        before,
        server.refresh_count()
    );
    println!(
        "   sum(1, 2, 39) = {}",
        ada.call_function("sum", "[1, 2, 39]").await?
    );

    step(
        5,
        "The session expires on the server (the demo moves the server's clock 61 days on)",
    );
    server.advance_server_clock(61 * 24 * 3600);
    match ada.refresh_access_token().await {
        Err(e) => println!("   refresh answered: {e}"),
        Ok(()) => println!("   unexpected: the refresh succeeded"),
    }
    println!(
        "   user {} is {:?}; current user is now {:?}",
        ada.id(),
        ada.state(),
        app.current_user().map(|u| u.id())
    );

    step(6, "Log out, and use the old refresh token again");
    let old_refresh = anon.refresh_token().unwrap_or_default();
    anon.log_out().await?;
    println!(
        "   anonymous user is {:?} (anonymous users are removed on logout)",
        anon.state()
    );
    let (status, body) = server
        .post_raw("/api/client/v2.0/auth/session", Some(&old_refresh), None)
        .await;
    println!("   POST /auth/session with the old refresh token -> HTTP {status} {body}");

    tokio::time::sleep(Duration::from_millis(50)).await; // let the last events print
    server.stop().await;
    println!("\nDone: server stopped.");
    Ok(())
}

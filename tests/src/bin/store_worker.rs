//! A second process for the storage tests (not a user-facing tool).
//!
//! `store_worker refresh-loop BASE_URL APP_ID DIR CYCLES`: opens the App on the shared session
//! directory and refreshes its current user CYCLES times; exits 1 if the user is ever logged out.
//!
//! `store_worker write-loop DIR APP_ID KEY_HEX|-`: saves numbered documents through a FileStore
//! until it is killed; the crash test checks what survives a SIGKILL.

use sessionkit::{App, AppConfig, FileStore, SessionStore, StorageConfig};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["refresh-loop", base_url, app_id, dir, cycles] => {
            let mut config = AppConfig::new(*app_id, *base_url);
            config.storage = StorageConfig::File {
                dir: dir.into(),
                encryption_key: None,
            };
            let app = App::new(config).expect("open the App");
            let user = app.current_user().expect("a logged-in user in the store");
            for cycle in 0..cycles.parse::<u32>().expect("cycles") {
                if let Err(e) = user.refresh_access_token().await {
                    eprintln!("cycle {cycle}: refresh failed: {e}");
                    std::process::exit(1);
                }
            }
            println!("ok");
        }
        ["write-loop", dir, app_id, key] => {
            let key = (*key != "-").then(|| {
                let bytes: Vec<u8> = (0..32)
                    .map(|i| u8::from_str_radix(&key[2 * i..2 * i + 2], 16).unwrap())
                    .collect();
                <[u8; 32]>::try_from(bytes).unwrap()
            });
            let store = FileStore::new(std::path::Path::new(dir), app_id, key).expect("store");
            let padding = "x".repeat(16 * 1024);
            for counter in 0u64.. {
                let doc = serde_json::json!({"counter": counter, "padding": padding});
                store.save(doc.to_string().as_bytes()).expect("save");
            }
        }
        _ => {
            eprintln!(
                "usage: store_worker refresh-loop BASE_URL APP_ID DIR CYCLES | write-loop DIR APP_ID KEY_HEX|-"
            );
            std::process::exit(2);
        }
    }
}

//! The `sessionkit-server` binary: see SERVER.md and the crate README.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use sessionkit_server::config::DEV_CUSTOM_TOKEN_KEY;
use sessionkit_server::{Config, RunningServer};

/// Self-hostable App Services client API server (users and sessions in SQLite).
#[derive(Debug, Parser)]
#[command(name = "sessionkit-server", version, about)]
struct Cli {
    /// TOML configuration file.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "dev",
        required_unless_present = "dev"
    )]
    config: Option<PathBuf>,
    /// Development mode: one app `sessionkit-dev` with every provider on; no file needed.
    #[arg(long)]
    dev: bool,
    /// Address to listen on, e.g. 127.0.0.1:9090 (port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Directory of the database.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Without a command: serve.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Access-token signing keys of an app that signs with ES256 or RS256.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
}

#[derive(Debug, clap::Subcommand)]
enum KeysAction {
    /// Makes a new key the one that signs; the old one stays published until the last access
    /// token it signed has expired. Running servers switch within a minute.
    Rotate {
        /// The app id.
        #[arg(long)]
        app: String,
    },
    /// Lists the app's keys: kid, algorithm, created, retired (unix seconds).
    List {
        /// The app id.
        #[arg(long)]
        app: String,
    },
}

/// Runs a `keys` command against the configured database; the exit code.
fn keys(config: &Config, action: &KeysAction) -> ExitCode {
    let app_id = match action {
        KeysAction::Rotate { app } | KeysAction::List { app } => app,
    };
    let Some(app) = config.app(app_id) else {
        eprintln!("argument error: --app: no app {app_id:?} in the config");
        return ExitCode::from(2);
    };
    let db = match sessionkit_server::db::Db::open(&config.data_dir) {
        Ok(db) => db,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let alg = app.access_token_algorithm;
    let id = app.id.clone();
    let result = db.call_sync(|conn| match action {
        KeysAction::Rotate { .. } => {
            if alg == sessionkit_server::config::JwtAlgorithm::HS256 {
                return Err(sessionkit_server::error::ApiError::bad_request(format!(
                    "app {id} signs with HS256 (the app secret): set access_token_algorithm = \
                     \"ES256\" or \"RS256\" in its [[app]] table first"
                )));
            }
            let kid = sessionkit_server::signing::rotate(conn, &id, alg, now)?;
            Ok(format!(
                "new signing key {kid} ({alg:?}) for app {id}; running servers sign with it \
                 within a minute"
            ))
        }
        KeysAction::List { .. } => {
            let ring = sessionkit_server::signing::load(conn, &id, now)?;
            Ok(format!("{ring:?}"))
        }
    });
    match result {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{}", e.message);
            ExitCode::FAILURE
        }
    }
}

fn load(cli: &Cli) -> Result<Config, String> {
    let mut config = match &cli.config {
        Some(path) => Config::from_file(path).map_err(|e| format!("config error: {e}"))?,
        None => Config::dev(),
    };
    if let Some(listen) = &cli.listen {
        config.listen = listen
            .parse()
            .map_err(|_| format!("argument error: --listen: not an IP:PORT address: {listen:?}"))?;
    }
    if let Some(dir) = &cli.data_dir {
        config.data_dir = dir.clone();
    }
    Ok(config)
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Unblocks the stop signals in this thread's mask, which every thread started later inherits.
///
/// A process inherits its parent's signal mask across exec. Some parents (Foundation's `Process`
/// on Linux, supervisors, language runtimes) spawn with SIGTERM blocked; the server would then
/// never see it, and a `terminate()` + wait would wait forever. Handlers for these signals are
/// installed by tokio, which also replaces an inherited SIG_IGN.
#[cfg(unix)]
fn unblock_stop_signals() {
    // SAFETY: plain libc calls on a local, zero-initialised sigset_t, before any other thread.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGTERM, libc::SIGINT] {
            libc::sigaddset(&mut set, sig);
        }
        let rc = libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            eprintln!("warning: cannot unblock SIGTERM/SIGINT (error {rc}); stop with SIGKILL");
        }
    }
}

fn main() -> ExitCode {
    #[cfg(unix)]
    unblock_stop_signals();
    let cli = Cli::parse();
    // Logs go to stderr: stdout's first line is the listening line, which tools wait for.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let config = match load(&cli) {
        Ok(c) => c,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    if let Some(Command::Keys { action }) = &cli.command {
        return keys(&config, action);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async {
        let server = match RunningServer::start(config).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        };
        {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "listening on {}", server.base_url());
            if cli.dev {
                if let Some(admin) = server.admin_keys() {
                    let _ = writeln!(out, "admin public key: {}", admin.public_key);
                    let _ = writeln!(out, "admin private key: {}", admin.private_key);
                }
                let _ = writeln!(out, "app id: {}", sessionkit_server::config::DEV_APP_ID);
                let _ = writeln!(out, "custom-token HS256 key: {DEV_CUSTOM_TOKEN_KEY}");
            }
            let _ = out.flush();
        }
        wait_for_signal().await;
        tracing::info!("shutting down");
        server.shutdown().await;
        tracing::info!("stopped");
        ExitCode::SUCCESS
    });
    // The database is closed by now; nothing left on the runtime may hold the exit up.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    code
}

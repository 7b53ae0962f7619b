//! The `sessionkit-server` binary: see SERVER.md and the crate README.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use sessionkit_server::config::DEV_CUSTOM_TOKEN_KEY;
use sessionkit_server::{Config, RunningServer};

/// Self-hostable App Services client API server (users and sessions in SQLite).
#[derive(Debug, Parser)]
// A subcommand lifts the --config requirement: `admin` may do without (checked by hand).
#[command(
    name = "sessionkit-server",
    version,
    about,
    subcommand_negates_reqs = true
)]
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
    /// Directory of the SQLite database.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// PostgreSQL database shared by several instances, postgres://USER@HOST[:PORT]/DB (also
    /// SESSIONKIT_DATABASE_URL, which keeps a password out of `ps`); SQLite when absent.
    #[arg(long, value_name = "URL")]
    database_url: Option<String>,
    /// Without a command: serve.
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Talks to a running server's admin API. The admin key pair comes from
    /// SESSIONKIT_ADMIN_PUBLIC_KEY and SESSIONKIT_ADMIN_PRIVATE_KEY (both set: they win), else
    /// from the config's [admin] table, never from an argument (other users of the machine can
    /// read those).
    Admin {
        /// The server's URL; default: SESSIONKIT_URL, else the config's public_url, else its
        /// listen address.
        #[arg(long, value_name = "URL")]
        url: Option<String>,
        #[command(subcommand)]
        action: AdminAction,
    },
    /// Access-token signing keys of an app that signs with ES256 or RS256.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
    /// Imports users from newline-delimited JSON, one user a line (SERVER.md, "Importing
    /// users"), straight into the configured database, in batches: prints each refused line
    /// with the reason, then `created N, updated N, unchanged N, refused N`. Exits 1 when a
    /// line was refused.
    Import {
        /// The app id.
        #[arg(long)]
        app: String,
        /// Check every line against the database and report, writing nothing.
        #[arg(long)]
        dry_run: bool,
        /// The file (`-`: standard input).
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Exports an app's users as newline-delimited JSON in the format `import` reads
    /// (SERVER.md, "Exporting users"), page by page from the configured database; prints what
    /// it wrote and left out on stderr.
    Export {
        /// The app id.
        #[arg(long)]
        app: String,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
        /// Where the export goes: a new file (mode 0600, written atomically); standard output
        /// when absent or `-`.
        #[arg(value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Moves the SQLite deployment of the config (every app's users, sessions, keys, mail queue
    /// and the server's secrets) into an empty PostgreSQL database, in one transaction, and
    /// prints each table's count (SERVER.md, "Moving to PostgreSQL"). Stop the server first:
    /// the copy refuses a database in use.
    Copy {
        /// The target, postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE (created when missing;
        /// must be empty). Default: SESSIONKIT_COPY_TO, which keeps a password out of `ps`.
        #[arg(long, value_name = "URL")]
        to: Option<String>,
    },
    /// Brings the database schema up to date and exits (the server also does it at start
    /// unless [database] migrate = false). On PostgreSQL, creates the database when missing.
    Migrate,
    /// Copies the SQLite database to FILE while the server runs: one consistent snapshot
    /// (SQLite's online backup; the server's writes go on), checked, mode 0600, then moved into
    /// place. On PostgreSQL it says how to use pg_dump instead.
    Backup {
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
        /// Where the copy goes (a new file).
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Replaces the SQLite database with a backup made by `backup`, after checking it. Stop
    /// the server first: the restore is refused while anything has the database open. An
    /// older schema is migrated when the server starts.
    Restore {
        /// The backup file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
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

#[derive(Debug, clap::Subcommand)]
enum AdminAction {
    /// Users of an app.
    Users {
        #[command(subcommand)]
        action: UsersAction,
    },
    /// Tokens of an app.
    Tokens {
        #[command(subcommand)]
        action: TokensAction,
    },
    /// The mail queue of an app (confirmation, reset and sign-in code mails).
    Mail {
        #[command(subcommand)]
        action: MailAction,
    },
    /// The audit log of an app: security events (SERVER.md, "Audit log").
    Events {
        #[command(subcommand)]
        action: EventsAction,
    },
}

#[derive(Debug, clap::Subcommand)]
enum EventsAction {
    /// Prints the app's events, oldest first, one JSON document per line (time, kind, user,
    /// session, address, user agent, actor, detail; never a token or a password). Every page
    /// is fetched unless --limit caps the count.
    List {
        #[arg(long)]
        app: String,
        /// Only this user's events.
        #[arg(long)]
        user: Option<String>,
        /// Only these kinds (repeat, or separate with commas), e.g. login_failed.
        #[arg(long, value_delimiter = ',')]
        kind: Vec<String>,
        /// From this Unix time on.
        #[arg(long)]
        since: Option<i64>,
        /// Before this Unix time.
        #[arg(long)]
        until: Option<i64>,
        /// At most this many events (at least 1).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        limit: Option<u64>,
        /// Only events after this one (its `seq`): where an earlier listing stopped.
        #[arg(long, value_name = "SEQ")]
        after: Option<i64>,
    },
}

#[derive(Debug, clap::Subcommand)]
enum MailAction {
    /// Prints each queued mail: seq, kind, address, status (pending, sent, failed), tries and
    /// the last failure's reason (one JSON document per line; never a token).
    List {
        #[arg(long)]
        app: String,
    },
    /// Sends the app's mail now: failed mails whose link or code is still live (a relay that
    /// refused them is fixed) and pending ones waiting for their next try (the relay is back).
    /// Mails whose link or code has expired stay failed: their users ask for a new mail.
    Retry {
        #[arg(long)]
        app: String,
    },
}

#[derive(Debug, clap::Subcommand)]
enum UsersAction {
    /// Prints each user: id, disabled, identities (one JSON document per line).
    List {
        #[arg(long)]
        app: String,
    },
    /// Revokes every session of the users: each device learns it at its next refresh.
    Revoke {
        #[arg(long)]
        app: String,
        /// User ids, comma separated.
        #[arg(long, value_delimiter = ',', required = true)]
        user: Vec<String>,
    },
    /// Disables the users: sessions revoked, logins refused.
    Disable {
        #[arg(long)]
        app: String,
        #[arg(long, value_delimiter = ',', required = true)]
        user: Vec<String>,
    },
    /// Enables the users again.
    Enable {
        #[arg(long)]
        app: String,
        #[arg(long, value_delimiter = ',', required = true)]
        user: Vec<String>,
    },
    /// Deletes the users and their sessions.
    Delete {
        #[arg(long)]
        app: String,
        #[arg(long, value_delimiter = ',', required = true)]
        user: Vec<String>,
    },
}

#[derive(Debug, clap::Subcommand)]
enum TokensAction {
    /// Verifies a token read from stdin (a token is a secret: not an argument); prints its
    /// claims, or exits 1 when it is expired or forged.
    Verify {
        #[arg(long)]
        app: String,
    },
}

/// The admin key pair: the environment first, then the config.
fn admin_keys(config: Option<&Config>) -> Result<(String, String), String> {
    use sessionkit_server::admin_client::{ENV_PRIVATE_KEY, ENV_PUBLIC_KEY};
    if let (Ok(public), Ok(private)) = (
        std::env::var(ENV_PUBLIC_KEY),
        std::env::var(ENV_PRIVATE_KEY),
    ) {
        return Ok((public, private));
    }
    match config.and_then(|c| c.admin.as_ref()) {
        Some(a) => Ok((a.public_key.clone(), a.private_key.clone())),
        None => Err(format!(
            "no admin key pair: put an [admin] table in the config, or set {ENV_PUBLIC_KEY} \
             and {ENV_PRIVATE_KEY}"
        )),
    }
}

/// The server's URL: `--url`, SESSIONKIT_URL, the config's `public_url`, its listen address.
fn admin_url(url: Option<&String>, config: Option<&Config>) -> Result<String, String> {
    if let Some(u) = url {
        return Ok(u.clone());
    }
    if let Ok(u) = std::env::var("SESSIONKIT_URL") {
        return Ok(u);
    }
    if let Some(c) = config {
        if let Some(u) = &c.public_url {
            return Ok(u.clone());
        }
        if c.listen.port() != 0 {
            return Ok(format!("http://{}", c.listen));
        }
    }
    Err("no server URL: pass --url, or set SESSIONKIT_URL".into())
}

/// Runs an `admin` command; the exit code.
async fn admin(config: Option<&Config>, url: Option<&String>, action: &AdminAction) -> ExitCode {
    use sessionkit_server::admin_client::AdminClient;
    let (url, (public, private)) = match (admin_url(url, config), admin_keys(config)) {
        (Ok(u), Ok(k)) => (u, k),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("argument error: {e}");
            return ExitCode::from(2);
        }
    };
    let client = match AdminClient::log_in(&url, &public, &private).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let mut failed = false;
    let mut report =
        |what: String, r: Result<(), sessionkit_server::admin_client::AdminError>| match r {
            Ok(()) => println!("{what}"),
            Err(e) => {
                failed = true;
                eprintln!("{what} failed: {e}");
            }
        };
    match action {
        AdminAction::Users { action } => match action {
            UsersAction::List { app } => match client.list_users(app).await {
                Ok(users) => {
                    for u in users {
                        println!("{u}");
                    }
                }
                Err(e) => report(format!("list users of {app}"), Err(e)),
            },
            UsersAction::Revoke { app, user } => {
                for id in user {
                    let r = client.revoke_sessions(app, id).await;
                    report(format!("revoked the sessions of {id}"), r);
                }
            }
            UsersAction::Disable { app, user } | UsersAction::Enable { app, user } => {
                let disable = matches!(action, UsersAction::Disable { .. });
                for id in user {
                    let r = client.set_disabled(app, id, disable).await;
                    let done = if disable { "disabled" } else { "enabled" };
                    report(format!("{done} {id}"), r);
                }
            }
            UsersAction::Delete { app, user } => {
                for id in user {
                    let r = client.delete_user(app, id).await;
                    report(format!("deleted {id}"), r);
                }
            }
        },
        AdminAction::Tokens {
            action: TokensAction::Verify { app },
        } => {
            let mut token = String::new();
            let _ = std::io::stdin().read_line(&mut token);
            match client.verify_token(app, token.trim()).await {
                Ok(serde_json::Value::String(s)) => {
                    eprintln!("{s}");
                    failed = true;
                }
                Ok(claims) => println!("{claims}"),
                Err(e) => report("verify the token".into(), Err(e)),
            }
        }
        AdminAction::Mail { action } => match action {
            MailAction::List { app } => match client.list_mail(app).await {
                Ok(mails) => {
                    for m in mails {
                        println!("{m}");
                    }
                }
                Err(e) => report(format!("list the mail of {app}"), Err(e)),
            },
            MailAction::Retry { app } => match client.retry_mail(app).await {
                Ok(n) => println!(
                    "{n} mail{} of {app} due now (failed ones with a live link or code, and pending ones)",
                    if n == 1 { "" } else { "s" }
                ),
                Err(e) => report(format!("retry the mail of {app}"), Err(e)),
            },
        },
        AdminAction::Events {
            action:
                EventsAction::List {
                    app,
                    user,
                    kind,
                    since,
                    until,
                    limit,
                    after,
                },
        } => {
            let mut base = url::form_urlencoded::Serializer::new(String::new());
            if let Some(u) = user {
                base.append_pair("user_id", u);
            }
            if !kind.is_empty() {
                base.append_pair("kind", &kind.join(","));
            }
            if let Some(s) = since {
                base.append_pair("since", &s.to_string());
            }
            if let Some(u) = until {
                base.append_pair("until", &u.to_string());
            }
            let base = base.finish();
            let mut left = limit.unwrap_or(u64::MAX);
            let mut after = *after;
            while left > 0 {
                let page = left.min(1000);
                let mut query = format!("{base}&limit={page}");
                if let Some(a) = after {
                    query.push_str(&format!("&after={a}"));
                }
                match client.list_events(app, &query).await {
                    Ok((events, next)) => {
                        for e in &events {
                            println!("{e}");
                        }
                        left = left.saturating_sub(events.len() as u64);
                        match next {
                            Some(n) => after = Some(n),
                            None => break,
                        }
                    }
                    Err(e) => {
                        report(format!("list the events of {app}"), Err(e));
                        break;
                    }
                }
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// Runs a `keys` command against the configured database; the exit code.
async fn keys(config: &Config, action: &KeysAction) -> ExitCode {
    use sessionkit_server::config::JwtAlgorithm;
    let app_id = match action {
        KeysAction::Rotate { app } | KeysAction::List { app } => app,
    };
    let Some(app) = config.app(app_id) else {
        eprintln!("argument error: --app: no app {app_id:?} in the config");
        return ExitCode::from(2);
    };
    let store = match sessionkit_server::store::open(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let (alg, id) = (app.access_token_algorithm, app.id.clone());
    let result = match action {
        KeysAction::Rotate { .. } if alg == JwtAlgorithm::HS256 => Err(format!(
            "app {id} signs with HS256 (the app secret): set access_token_algorithm = \
             \"ES256\" or \"RS256\" in its [[app]] table first"
        )),
        KeysAction::Rotate { .. } => {
            use sessionkit_server::audit;
            let log = match config.audit.log.as_deref().map(audit::LogTarget::open) {
                Some(Err(e)) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
                Some(Ok(log)) => Some(log),
                None => None,
            };
            // An operator's change: the admin's, not the server's.
            let mut context = audit::server_context(now);
            context.actor = audit::Actor::Admin;
            audit::ship(
                context,
                log.as_ref(),
                sessionkit_server::signing::rotate(store.as_ref(), &id, alg, now),
                Result::is_ok,
            )
            .await
        }
        .map(|kid| {
            format!(
                "new signing key {kid} ({alg:?}) for app {id}; running servers sign with it \
                     within a minute"
            )
        })
        .map_err(|e| e.message),
        KeysAction::List { .. } => sessionkit_server::signing::load(store.as_ref(), &id, now)
            .await
            .map(|ring| format!("{ring:?}"))
            .map_err(|e| e.message),
    };
    store.close().await;
    match result {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `import`: streams the file through the configured database; the exit code.
async fn import(config: &Config, app_id: &str, dry_run: bool, file: &std::path::Path) -> ExitCode {
    if config.app(app_id).is_none() {
        eprintln!("argument error: --app: no app {app_id:?} in the config");
        return ExitCode::from(2);
    }
    let input: Box<dyn std::io::BufRead> = if file.as_os_str() == "-" {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        match std::fs::File::open(file) {
            Ok(f) => Box::new(std::io::BufReader::new(f)),
            Err(e) => {
                eprintln!("argument error: cannot open {}: {e}", file.display());
                return ExitCode::from(2);
            }
        }
    };
    let store = match sessionkit_server::store::open(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    };
    let report =
        sessionkit_server::import::run_file(store.as_ref(), app_id, input, dry_run, now, |r| {
            println!("line {}: refused: {}", r.line, r.reason)
        })
        .await;
    store.close().await;
    match report {
        Ok(report) => {
            let dry = if dry_run {
                " (dry run: nothing written)"
            } else {
                ""
            };
            println!("{}{dry}", report.summary());
            if report.refused > 0 {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `export`: writes the app's users to the file or standard output; the exit code.
async fn export(
    config: &Config,
    app_id: &str,
    file: Option<&std::path::Path>,
    force: bool,
) -> ExitCode {
    if config.app(app_id).is_none() {
        eprintln!("argument error: --app: no app {app_id:?} in the config");
        return ExitCode::from(2);
    }
    let store = match sessionkit_server::store::open(config).await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    use sessionkit_server::export;
    let result = match file.filter(|f| f.as_os_str() != "-") {
        Some(f) => export::to_file(store.as_ref(), app_id, f, force).await,
        None => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            export::run(store.as_ref(), app_id, &mut out).await
        }
    };
    store.close().await;
    match result {
        Ok(summary) => {
            // stderr: stdout may be the export itself.
            eprintln!("{}", summary.text());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// The environment variable `copy` takes its target from when `--to` is absent.
const COPY_TO_ENV: &str = "SESSIONKIT_COPY_TO";

/// Runs `copy`: moves the SQLite database to PostgreSQL; the exit code.
async fn copy(config: &Config, to: Option<&String>) -> ExitCode {
    use sessionkit_server::config::DatabaseUrl;
    if config.database.url.is_some() {
        eprintln!(
            "argument error: copy reads a SQLite deployment, and this config already uses \
             PostgreSQL ([database] url, --database-url or SESSIONKIT_DATABASE_URL): give the \
             SQLite deployment's config, and the target in --to"
        );
        return ExitCode::from(2);
    }
    let url = to
        .cloned()
        .or_else(|| std::env::var(COPY_TO_ENV).ok().filter(|u| !u.is_empty()));
    let Some(url) = url.filter(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"))
    else {
        eprintln!(
            "argument error: copy needs the target as --to postgres://USER@HOST[:PORT]/DATABASE \
             (or in {COPY_TO_ENV}, which keeps a password out of ps)"
        );
        return ExitCode::from(2);
    };
    let url = DatabaseUrl::new(url);
    let started = std::time::Instant::now();
    match sessionkit_server::copy::run(&config.data_dir, &url).await {
        Ok(copied) => {
            println!(
                "copied {} to {url:?} in {:.1} s; rows per table (checked in both):",
                config.data_dir.display(),
                started.elapsed().as_secs_f64()
            );
            print!("{}", copied.text());
            println!(
                "now set [database] url (or SESSIONKIT_DATABASE_URL) to the target and start the \
                 server; keep the SQLite data dir until the new one is proven"
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("copy failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `backup` or `restore` (SQLite only); the exit code.
fn backup_or_restore(config: &Config, command: &Command) -> ExitCode {
    use sessionkit_server::backup;
    let name = match command {
        Command::Backup { .. } => "backup",
        _ => "restore",
    };
    if config.database.url.is_some() {
        eprintln!("{}", backup::postgres_refusal(name));
        return ExitCode::from(2);
    }
    let result = match command {
        Command::Backup { force, file } => {
            backup::backup(&config.data_dir, file, *force).map(|c| {
                format!(
                    "backed up {} to {} (schema version {}, {} bytes)",
                    config.data_dir.display(),
                    file.display(),
                    c.schema_version,
                    c.bytes
                )
            })
        }
        Command::Restore { file } => backup::restore(&config.data_dir, file).map(|c| {
            format!(
                "restored {} into {} (schema version {}, {} bytes); start the server",
                file.display(),
                config.data_dir.display(),
                c.schema_version,
                c.bytes
            )
        }),
        _ => return ExitCode::FAILURE,
    };
    match result {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{name} failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `migrate`: creates the PostgreSQL database when missing, applies pending migrations,
/// and says what it did; the exit code.
async fn migrate(config: &Config) -> ExitCode {
    use sessionkit_server::store::postgres::PostgresStore;
    let result = async {
        match &config.database.url {
            Some(url) => {
                if PostgresStore::create_database(url.expose()).await? {
                    println!("created database {url:?}");
                }
                let mut db = config.database.clone();
                db.migrate = false;
                let store = PostgresStore::open_unchecked(url.expose(), &db).await?;
                let applied = store.migrate().await?;
                sessionkit_server::store::Store::close(&store).await;
                Ok(if applied.is_empty() {
                    format!(
                        "PostgreSQL schema is current (version {})",
                        sessionkit_server::store::postgres::SCHEMA_VERSION
                    )
                } else {
                    format!("PostgreSQL schema migrated: applied {applied:?}")
                })
            }
            None => {
                let store = sessionkit_server::store::open(config).await?;
                store.close().await;
                Ok(format!(
                    "SQLite schema in {} is current (version {})",
                    config.data_dir.display(),
                    sessionkit_server::store::sqlite::SCHEMA_VERSION
                ))
            }
        }
    }
    .await;
    match result {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            let e: String = e;
            eprintln!("{e}");
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
    // The command line wins over the environment, which wins over the file.
    let url = cli.database_url.clone().or_else(|| {
        std::env::var("SESSIONKIT_DATABASE_URL")
            .ok()
            .filter(|u| !u.is_empty())
    });
    if let Some(url) = url {
        config.database.url = Some(sessionkit_server::config::DatabaseUrl::new(url));
    }
    // [audit] log from the environment (a container's stdout; the test suite's secrets scan),
    // which wins over the file as the database URL's does.
    if let Some(log) = std::env::var("SESSIONKIT_AUDIT_LOG")
        .ok()
        .filter(|v| !v.is_empty())
    {
        config.audit.log = Some(log);
    }
    if let Some(mail) = config.mail.as_mut() {
        mail.password = std::env::var(sessionkit_server::mail::PASSWORD_ENV)
            .ok()
            .filter(|p| !p.is_empty())
            .map(sessionkit_server::config::Secret);
    }
    // Lazy migration's shared secrets, from the variables the config names (never the file).
    for (i, app) in config.apps.iter_mut().enumerate() {
        if let Some(up) = app.providers.local_userpass.as_mut()
            && up.migrate_webhook.is_some()
            && let Some(var) = up.migrate_webhook_secret_env.clone()
        {
            match std::env::var(&var).ok().filter(|v| !v.is_empty()) {
                Some(secret) => {
                    up.migrate_webhook_secret = Some(sessionkit_server::config::Secret(secret))
                }
                None => {
                    return Err(format!(
                        "config error: app[{i}].providers.local-userpass.\
                         migrate_webhook_secret_env: the environment variable {var} is not set \
                         (it holds the secret shared with migrate_webhook)"
                    ));
                }
            }
        }
    }
    config
        .validate()
        .map_err(|e| format!("config error: {e}"))?;
    Ok(config)
}

/// Resolves at SIGINT or SIGTERM. The handlers are installed when this is called, not when
/// the future is first polled: the server calls it before it says it is listening, so that a
/// supervisor (or a test) that stops it as soon as it reads that line stops it cleanly instead
/// of killing it with the signal's default action.
fn stop_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let int = signal(SignalKind::interrupt());
        let term = signal(SignalKind::terminate());
        async move {
            match (int, term) {
                (Ok(mut int), Ok(mut term)) => {
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
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
    // Colours only on a terminal: journald, docker logs and files get plain text (no escape
    // codes in front of every level), and NO_COLOR (no-color.org) turns them off everywhere.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    if let Some(Command::Admin { url, action }) = &cli.command {
        // The config is optional here: --url and the environment may say it all.
        let config = match cli.config.is_some().then(|| load(&cli)).transpose() {
            Ok(c) => c,
            Err(msg) => {
                eprintln!("{msg}");
                return ExitCode::from(2);
            }
        };
        return match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(admin(config.as_ref(), url.as_ref(), action)),
            Err(e) => {
                eprintln!("cannot start runtime: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if cli.config.is_none() && !cli.dev {
        eprintln!("argument error: --config FILE (or --dev) is required");
        return ExitCode::from(2);
    }
    let config = match load(&cli) {
        Ok(c) => c,
        Err(msg) => {
            eprintln!("{msg}");
            return ExitCode::from(2);
        }
    };
    if let Some(command @ (Command::Backup { .. } | Command::Restore { .. })) = &cli.command {
        return backup_or_restore(&config, command);
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
        match &cli.command {
            Some(Command::Keys { action }) => return keys(&config, action).await,
            Some(Command::Migrate) => return migrate(&config).await,
            Some(Command::Import { app, dry_run, file }) => {
                return import(&config, app, *dry_run, file).await;
            }
            Some(Command::Copy { to }) => return copy(&config, to.as_ref()).await,
            Some(Command::Export { app, force, file }) => {
                return export(&config, app, file.as_deref(), *force).await;
            }
            _ => {}
        }
        let server = match RunningServer::start(config).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        };
        let stopped = stop_signal();
        {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "listening on {}", server.base_url());
            if let Some(addr) = server.metrics_addr() {
                let _ = writeln!(out, "metrics on http://{addr}/metrics");
            }
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
        stopped.await;
        tracing::info!("shutting down");
        server.shutdown().await;
        tracing::info!("stopped");
        ExitCode::SUCCESS
    });
    // The database is closed by now; nothing left on the runtime may hold the exit up.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    code
}

//! The Rust conformance runner: `cargo run -p sessionkit-tests --bin conformance -- [options]`.
//!
//! Options: `--scenarios DIR` (default tests/conformance/scenarios), `--out FILE` (transcript,
//! default target/conformance/rust.json), `--base-url URL --app-id ID` (run against that server
//! instead of a fresh local one per scenario), `--admin PUBLIC:PRIVATE`, `--jwt-key KEY`,
//! `--filter TEXT`. Prints one line per scenario, then `rust: N passed, N failed`.

use std::path::PathBuf;

use sessionkit_tests::conformance::{Options, run_file, scenario_files, transcript_json};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut dir = root.join("conformance/scenarios");
    let mut out = root.join("../target/conformance/rust.json");
    let mut options = Options::default();
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .unwrap_or_else(|| usage(&format!("{arg} needs a value")))
        };
        match arg.as_str() {
            "--scenarios" => dir = value().into(),
            "--out" => out = value().into(),
            "--base-url" => options.base_url = Some(value()),
            "--app-id" => options.app_id = Some(value()),
            "--admin" => {
                let v = value();
                let (public, private) = v
                    .split_once(':')
                    .unwrap_or_else(|| usage("--admin takes PUBLIC:PRIVATE"));
                options.admin = Some((public.into(), private.into()));
            }
            "--jwt-key" => options.jwt_key = Some(value()),
            "--filter" => options.filter = Some(value()),
            "-h" | "--help" => usage(""),
            other => usage(&format!("unknown option {other}")),
        }
    }
    if options.base_url.is_some() != options.app_id.is_some() {
        usage("--base-url and --app-id go together");
    }
    let mut outcomes = Vec::new();
    for file in scenario_files(&dir, options.filter.as_deref()) {
        let outcome = run_file(&file, &options).await;
        match (&outcome.skipped, outcome.failures.is_empty()) {
            (Some(why), _) => println!("SKIP {} ({why})", outcome.name),
            (None, true) => println!("PASS {}", outcome.name),
            (None, false) => println!("FAIL {}\n  {}", outcome.name, outcome.failures.join("\n  ")),
        }
        outcomes.push(outcome);
    }
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent).expect("create the transcript directory");
    }
    let doc = transcript_json("rust", &outcomes);
    std::fs::write(&out, serde_json::to_string_pretty(&doc).unwrap())
        .expect("write the transcript");
    let ran: Vec<_> = outcomes.iter().filter(|o| o.skipped.is_none()).collect();
    let failed = ran.iter().filter(|o| !o.failures.is_empty()).count();
    let skipped = outcomes.len() - ran.len();
    let tail = if skipped > 0 {
        format!(", {skipped} skipped")
    } else {
        String::new()
    };
    println!("rust: {} passed, {failed} failed{tail}", ran.len() - failed);
    std::process::exit(i32::from(failed > 0));
}

fn usage(problem: &str) -> ! {
    if !problem.is_empty() {
        eprintln!("conformance: {problem}");
    }
    eprintln!(
        "usage: conformance [--scenarios DIR] [--out FILE] [--base-url URL --app-id ID] \
         [--admin PUBLIC:PRIVATE] [--jwt-key KEY] [--filter TEXT]"
    );
    std::process::exit(2);
}

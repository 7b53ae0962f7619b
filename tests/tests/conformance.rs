//! Runs every conformance scenario through the Rust API against fresh servers, and writes the
//! transcript (target/conformance/rust.json; rust-pg.json on the PostgreSQL pass) that the
//! cross-language report compares.

use sessionkit_tests::conformance::{Options, run_file, scenario_files, transcript_json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_passes_in_rust() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let files = scenario_files(&root.join("conformance/scenarios"), None);
    assert!(
        files.len() >= 40,
        "the suite has at least 40 scenarios, found {}",
        files.len()
    );
    let mut outcomes = Vec::new();
    for file in &files {
        outcomes.push(run_file(file, &Options::default()).await);
    }
    // Beside the other languages' transcripts, in whichever target dir this build uses.
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("conformance");
    std::fs::create_dir_all(&out).unwrap();
    // On scripts/test-all's PostgreSQL pass the transcript is a language of its own in the
    // report, so a backend that answers differently shows up as a differing scenario.
    let (language, file) = if std::env::var_os("SESSIONKIT_TEST_POSTGRES").is_some() {
        ("rust-pg", "rust-pg.json")
    } else {
        ("rust", "rust.json")
    };
    let doc = transcript_json(language, &outcomes);
    std::fs::write(out.join(file), serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    let failed: Vec<String> = outcomes
        .iter()
        .filter(|o| !o.failures.is_empty())
        .map(|o| format!("{}:\n  {}", o.name, o.failures.join("\n  ")))
        .collect();
    assert!(
        failed.is_empty(),
        "{} scenario(s) failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

//! Every configuration the docs show is one the server accepts as shown (#22: no doc may rely on
//! a config that a default now refuses). A ```toml block of SERVER.md or the server's README is
//! parsed and validated exactly as `sessionkit-server --config` would.

use sessionkit_server::Config;

/// The ```toml blocks of a Markdown file, with the line each starts on.
fn toml_blocks(path: &str) -> Vec<(usize, String)> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut blocks = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        match (&mut current, line.trim_start()) {
            (None, l) if l.starts_with("```toml") => current = Some((i + 2, String::new())),
            (Some(_), l) if l.starts_with("```") => blocks.extend(current.take()),
            (Some((_, block)), _) => {
                block.push_str(line);
                block.push('\n');
            }
            _ => {}
        }
    }
    blocks
}

#[test]
fn every_config_in_the_docs_is_accepted() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let mut seen = 0;
    for doc in ["docs/SERVER.md", "server/README.md", "README.md"] {
        for (line, block) in toml_blocks(&format!("{root}/{doc}")) {
            seen += 1;
            if let Err(e) = Config::from_toml_str(&block) {
                panic!("{doc}:{line}: the server refuses this config: {e}");
            }
        }
    }
    assert!(seen >= 2, "no ```toml block found in the docs ({seen})");
}

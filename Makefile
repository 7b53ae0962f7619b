# The two commands of the quick start, plus the pieces they are made of.
.PHONY: demo test test-rust lint bench conformance fuzz wheels platforms

demo:  ## starts a local sessionkit-server and walks through the SDK's life cycle
	cargo run -q -p sessionkit-tests --bin demo

test:  ## every test in every language, each printing "LANG: N passed, N failed"
	bash scripts/test-all

test-rust:
	bash scripts/test-all rust

lint:  ## formatting, clippy, the SDK crate building alone, one-way module layers (docs/ARCHITECTURE.md), and the size budget of the library the wheel ships (3.0 MB, stripped)
	cargo fmt --all -- --check
	python3 scripts/check-module-cycles --self-test core/src bindings/ffi/src server/src
	cargo clippy --workspace --all-targets -- -D warnings
	# The SDK crate alone, with only the features it asks for (in the workspace, another crate's
	# tokio features reach it too): what an app that depends on it builds.
	cargo check -p sessionkit --lib
	bash scripts/check-size

bench:  ## every benchmark (Rust, server load, mail, FFI size, Python, Kotlin); figures in BENCHMARKS.md
	bash scripts/bench-all

conformance:  ## every language's conformance runner, then the cross-language report
	bash scripts/conformance

wheels:  ## the Python wheel for this machine: manylinux2014 on Linux, stripped, auditwheel-checked, in target/wheelhouse
	bash scripts/build-wheels

platforms:  ## wheels and libraries for aarch64 Linux, Windows, macOS, iOS (XCFramework) and Android, cross-built and size-checked; see scripts/platforms
	bash scripts/platforms

fuzz:  ## every fuzz target for FUZZ_SECONDS each (default 60), corpus in fuzz/corpus; see fuzz/README.md
	bash scripts/fuzz

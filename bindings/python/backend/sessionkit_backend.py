"""The package's PEP 517 build backend: maturin's, behind a check that Rust is installed.

Without cargo on PATH, maturin's backend downloads a whole Rust toolchain (about 1 GB) into a
temporary directory and compiles for minutes, without asking. A source build here fails at
once instead, saying what to install or to use the prebuilt wheel. Every hook checks, because
pip calls a different first hook for a wheel, an editable install and an sdist.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from typing import Any, Mapping, NoReturn, Optional

import maturin

PREBUILT = "make wheels, then pip install target/wheelhouse/sessionkit-*.whl"


def _minimum_rust() -> Optional[tuple]:
    """The workspace's rust-version (Cargo.toml above the source dir), if there is one."""
    here = os.path.abspath(os.getcwd())
    while True:
        manifest = os.path.join(here, "Cargo.toml")
        if os.path.isfile(manifest):
            with open(manifest, encoding="utf-8") as f:
                text = f.read()
            if "[workspace" in text:
                found = re.search(r'^rust-version\s*=\s*"(\d+)\.(\d+)', text, re.M)
                return (int(found[1]), int(found[2])) if found else None
        parent = os.path.dirname(here)
        if parent == here:
            return None
        here = parent


def _fail(problem: str, minimum: Optional[tuple]) -> NoReturn:
    need = f"Rust {minimum[0]}.{minimum[1]} or newer" if minimum else "Rust"
    sys.stderr.write(
        f"\nsessionkit: building from source needs {need}, and {problem}.\n"
        f"Install Rust with rustup (https://rustup.rs), or install the prebuilt wheel, which needs\n"
        f"no Rust: {PREBUILT}\n"
        "(maturin's automatic Rust download is not used: it fetches about 1 GB.)\n\n"
    )
    sys.exit(1)


def _require_cargo() -> None:
    minimum = _minimum_rust()
    cargo = shutil.which("cargo")
    if cargo is None:
        _fail("cargo is not on PATH", minimum)
    try:
        out = subprocess.run([cargo, "--version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as e:
        _fail(f"{cargo} --version failed ({e})", minimum)
    # A rustup proxy without a toolchain is on PATH but fails here.
    found = re.match(r"cargo (\d+)\.(\d+)", out.stdout)
    if out.returncode != 0 or not found:
        _fail(f"{cargo} --version failed: {(out.stderr or out.stdout).strip()[:300]}", minimum)
    if minimum and (int(found[1]), int(found[2])) < minimum:
        _fail(f"{cargo} is {found[0]}", minimum)
    # cargo is there, so maturin has no reason to fetch Rust; this makes sure it never does.
    os.environ["MATURIN_NO_INSTALL_RUST"] = "1"


Settings = Optional[Mapping[str, Any]]


def get_requires_for_build_wheel(config_settings: Settings = None) -> list:
    _require_cargo()
    return maturin.get_requires_for_build_wheel(config_settings)


def get_requires_for_build_editable(config_settings: Settings = None) -> list:
    _require_cargo()
    return maturin.get_requires_for_build_editable(config_settings)


def get_requires_for_build_sdist(config_settings: Settings = None) -> list:
    _require_cargo()
    return maturin.get_requires_for_build_sdist(config_settings)


def prepare_metadata_for_build_wheel(metadata_directory: str, config_settings: Settings = None) -> str:
    _require_cargo()
    return maturin.prepare_metadata_for_build_wheel(metadata_directory, config_settings)


def prepare_metadata_for_build_editable(metadata_directory: str, config_settings: Settings = None) -> str:
    _require_cargo()
    return maturin.prepare_metadata_for_build_editable(metadata_directory, config_settings)


def build_wheel(wheel_directory: str, config_settings: Settings = None, metadata_directory: Optional[str] = None) -> str:
    _require_cargo()
    return maturin.build_wheel(wheel_directory, config_settings, metadata_directory)


def build_editable(wheel_directory: str, config_settings: Settings = None, metadata_directory: Optional[str] = None) -> str:
    _require_cargo()
    return maturin.build_editable(wheel_directory, config_settings, metadata_directory)


def build_sdist(sdist_directory: str, config_settings: Settings = None) -> str:
    _require_cargo()
    return maturin.build_sdist(sdist_directory, config_settings)

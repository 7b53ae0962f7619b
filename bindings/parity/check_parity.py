#!/usr/bin/env python3
"""Checks that the generated Python, Kotlin and Swift bindings each expose every member of
the public API, as listed in API.md (parsed here, so the check cannot drift from the contract).

    python3 bindings/parity/check_parity.py [--api PATH] [--lib libsessionkit_ffi.so] [LANG...]

Without --lib it builds the ffi crate (debug) first. Bindings are generated with the
workspace's uniffi-bindgen into <target>/bindings/<lang>. Exits 1 if a member is missing.
"""

from __future__ import annotations

import argparse
import functools
import os
import pathlib
import re
import subprocess
import sys
from typing import Dict, List, Tuple

REPO = pathlib.Path(__file__).resolve().parents[2]
LANGS = ("python", "kotlin", "swift")

# (owner, member, kind); kinds: ctor, method, field, variant, holds (a type used in owner)
Item = Tuple[str, str, str]


def _ticks(text: str) -> List[str]:
    return re.findall(r"`([^`]+)`", text)


def _fn_name(sig: str) -> str | None:
    m = re.match(r"^(?:async\s+)?(?:\w+::)?(\w+)\s*\(", sig.strip())
    return m.group(1) if m else None


def _section(md: str, title: str) -> str:
    m = re.search(rf"^## {re.escape(title)}(?=[ \t]|$).*?$(.*?)(?=^## |\Z)", md, re.M | re.S)
    if not m:
        raise SystemExit(f"API.md has no section '## {title}'")
    return m.group(1)


def _bullet(section: str, name: str) -> str:
    m = re.search(rf"^- `{name}\b(.*?)(?=^- |\Z)", section, re.M | re.S)
    if not m:
        raise SystemExit(f"API.md: no bullet for {name}")
    return m.group(0)


def _camel_words(text: str) -> List[str]:
    """CamelCase names (variants/kinds) in backticks, without their `{ ... }` part."""
    out = []
    for t in _ticks(text):
        m = re.match(r"^([A-Z][A-Za-z]+)\b", t)
        if m:
            out.append(m.group(1))
    return out


def parse_api(md: str) -> List[Item]:
    items: List[Item] = []
    for owner in ("App", "User"):
        for line in _section(md, owner).splitlines():
            if not line.startswith("| `"):
                continue
            cells = [c.strip() for c in line.strip("|").split("|")]
            for sig in _ticks(cells[0]):
                name = _fn_name(sig)
                if name == "new":
                    items.append((owner, "new", "ctor"))
                elif name:
                    items.append((owner, name, "method"))
            if cells[0].startswith("`api_keys()"):
                for sig in _ticks(cells[1]):
                    if _fn_name(sig):
                        items.append(("ApiKeyAuth", _fn_name(sig), "method"))
    # The provider objects' paragraphs: "`EmailPasswordAuth`: `a(x)`, `b(y)`; all async." The
    # email one-time-code one (#23) must be there too, not only its App accessor.
    for owner in ("EmailPasswordAuth", "EmailOtpAuth"):
        found = re.search(rf"`{owner}`:(.*?)(?:all )?async", md, re.S)
        if not found:
            raise SystemExit(f"API.md: no paragraph for {owner}")
        for sig in _ticks(found.group(1)):
            items.append((owner, _fn_name(sig), "method"))

    values = _section(md, "Values")
    for v in _camel_words(_bullet(values, "Credentials"))[1:]:
        items.append(("Credentials", v, "variant"))
    config = _bullet(values, "AppConfig")
    for t in _ticks(config)[1:]:
        m = re.match(r"^([a-z_]+)\b", t)
        if m:
            items.append(("AppConfig", m.group(1), "field"))
        elif t == "SessionStore":
            # "or a foreign SessionStore": some StorageConfig variant carries one.
            items.append(("StorageConfig", t, "holds"))
        elif re.match(r"^[A-Z]", t):
            items.append(("StorageConfig", re.match(r"^(\w+)", t).group(1), "variant"))
    for record, kinds_of in (("AuthEvent", "AuthEventKind"), ("SessionError", "SessionErrorKind")):
        bullet = _bullet(values, record)
        fields = re.search(rf"`{record} \{{(.*?)\}}", bullet, re.S).group(1)
        for f in re.findall(r"(?:^|,)\s*([a-z_]+)", fields):
            items.append((record, f, "field"))
        kinds = bullet.split("one of", 1)[1]
        for k in _camel_words(kinds):
            items.append((kinds_of, k, "variant"))
    # A user's sessions (#25): the records' fields (SessionDevice's braces are inside the
    # SessionInfo bullet) and those of the DeviceInfo a login sends, and the scopes of log_out:
    # the names between "one of" and the colon.
    for record in ("DeviceInfo", "SessionInfo", "SessionDevice"):
        found = re.search(rf"`{record} \{{(.*?)\}}", values, re.S)
        if not found:
            raise SystemExit(f"API.md: no `{record} {{...}}` in Values")
        for f in re.findall(r"(?:^|,)\s*([a-z_]+)", found.group(1)):
            items.append((record, f, "field"))
    scopes = _bullet(values, "LogOutScope").split("one of", 1)[1].split(":", 1)[0]
    for v in _camel_words(scopes):
        items.append(("LogOutScope", v, "variant"))

    foreign = _section(md, "Foreign-implementable interfaces")
    store = _bullet(foreign, "SessionStore")
    for sig in _ticks(store):
        if _fn_name(sig):
            items.append(("SessionStore", _fn_name(sig), "method"))
    for v in ("Unavailable", "Corrupt"):
        if f"`{v}`" in store:
            items.append(("StoreError", v, "variant"))
    for t in _ticks(foreign):
        m = re.match(r"^(\w+)::(\w+)\(", t)
        if m:
            items.append((m.group(1), m.group(2), "method"))

    for v in _camel_words(_section(md, "Errors (`AppError`)")):
        if v != "AppError":
            items.append(("AppError", v, "variant"))
    # De-duplicate, keep order.
    return list(dict.fromkeys(items))


# --- naming per language -------------------------------------------------------------------


def camel(snake: str) -> str:
    head, *rest = snake.split("_")
    return head + "".join(w[:1].upper() + w[1:] for w in rest)


def upper_snake(camel_name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", camel_name).upper()


def lower_first(name: str) -> str:
    return name[:1].lower() + name[1:]


FLAT_ENUMS = {"AuthEventKind", "SessionErrorKind", "UserState", "LogLevel", "LogOutScope"}
ERRORS = {"AppError", "StoreError"}


def blocks(source: str, names: List[str]) -> str:
    """The text of every top-level type declaration named one of `names`, up to the next
    top-level declaration. (Swift puts members at column 0, so indentation cannot tell.)"""
    decl = re.compile(
        r"^(?:(?:public|internal|open|data|sealed|enum|abstract|final|private|fileprivate)\s+)*"
        r"(?:class|interface|protocol|struct|enum|object|extension)\s+`?(\w+)`?"
    )
    # Python's and Kotlin's top-level functions sit at column 0 and belong to no type.
    free_fn = re.compile(r"^(?:(?:private|internal|public)\s+)?(?:async def|def|fun)\b")
    out, keep = [], False
    for line in source.splitlines():
        m = decl.match(line)
        if m:
            keep = m.group(1) in names
        elif free_fn.match(line):
            keep = False
        if keep:
            out.append(line)
    return "\n".join(out)


def check_python(src: str, item: Item) -> bool:
    owner, member, kind = item
    block = blocks(src, [owner])
    if kind == "holds":
        return bool(re.search(rf"\b{member}\b", block))
    if kind == "ctor":
        return bool(re.search(r"def __init__\(self, config", block))
    if kind == "method":
        return bool(re.search(rf"\bdef {member}\(", block))
    if kind == "field":
        return bool(re.search(rf"\b{member}\s*:", block))
    if owner in ERRORS:
        return bool(re.search(rf"class {member}\(", block))
    if owner in FLAT_ENUMS:
        return bool(re.search(rf"^\s+{upper_snake(member)} = ", block, re.M))
    return bool(re.search(rf"class {upper_snake(member)}\b", block))


def check_kotlin(src: str, item: Item) -> bool:
    owner, member, kind = item
    names = [owner, owner + "Interface", owner.replace("Error", "Exception")]
    block = blocks(src, names)
    if kind == "holds":
        return bool(re.search(rf"\b{member}\b", block))
    q = lambda n: rf"`?{n}`?"  # noqa: E731  Kotlin names may be backquoted
    if kind == "ctor":
        return bool(re.search(r"constructor\(\s*`?config`?", block))
    if kind == "method":
        return bool(re.search(rf"\bfun {q(camel(member))}\(", block))
    if kind == "field":
        return bool(re.search(rf"\b(?:val|var) {q(camel(member))}\s*:", block))
    if owner in FLAT_ENUMS:
        return bool(re.search(rf"^\s+{upper_snake(member)}\b", block, re.M))
    return bool(re.search(rf"\b(?:class|object) {q(member)}\b", block))


def check_swift(src: str, item: Item) -> bool:
    owner, member, kind = item
    block = blocks(src, [owner, owner + "Protocol"])
    if kind == "holds":
        return bool(re.search(rf"\b{member}\b", block))
    if kind == "ctor":
        return bool(re.search(r"\binit\(config:", block))
    if kind == "method":
        return bool(re.search(rf"\bfunc {camel(member)}\(", block))
    if kind == "field":
        return bool(re.search(rf"\b(?:var|let) {camel(member)}\s*:", block))
    names = {member, lower_first(member)}
    return any(re.search(rf"\bcase {n}\b", block) for n in names)


CHECKS = {"python": check_python, "kotlin": check_kotlin, "swift": check_swift}
SOURCES = {"python": "*.py", "kotlin": "**/*.kt", "swift": "*.swift"}


@functools.lru_cache(maxsize=None)
def uniffi_bindgen() -> pathlib.Path:
    """The workspace's uniffi-bindgen, from the debug build every test script shares.

    `cargo run -p uniffi-bindgen` would resolve features for that package alone and build its
    dependencies a second time; scripts/build-test-binaries is a no-op after the others.
    """
    subprocess.run(["bash", "scripts/build-test-binaries", "-q"], cwd=REPO, check=True)
    return target_dir() / "debug" / "uniffi-bindgen"


def generate(lib: pathlib.Path, lang: str, out: pathlib.Path) -> str:
    subprocess.run(
        [str(uniffi_bindgen()), "generate", str(lib),
         "--language", lang, "--out-dir", str(out), "--no-format"],
        cwd=REPO, check=True, stdout=subprocess.DEVNULL,
    )
    files = sorted(out.glob(SOURCES[lang]))
    if not files:
        raise SystemExit(f"{lang}: uniffi-bindgen wrote no source into {out}")
    return "\n".join(f.read_text() for f in files)


def target_dir() -> pathlib.Path:
    return pathlib.Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))


def check(lang: str, lib: pathlib.Path, api: pathlib.Path) -> List[str]:
    """The API.md members missing from `lang`'s generated bindings."""
    items = parse_api(api.read_text())
    src = generate(lib, lang, target_dir() / "bindings" / lang)
    return [f"{o}.{m} ({k})" for (o, m, k) in items if not CHECKS[lang](src, (o, m, k))]


def default_api() -> pathlib.Path:
    # The project's own copy is the contract; ../shared holds only where it started.
    p = REPO / "docs" / "API.md"
    if not p.exists():
        raise SystemExit(f"{p} not found; pass --api")
    return p


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--api", type=pathlib.Path, default=None)
    ap.add_argument("--lib", type=pathlib.Path, default=None)
    ap.add_argument("langs", nargs="*", default=list(LANGS))
    args = ap.parse_args()
    api = args.api or default_api()
    lib = args.lib
    if lib is None:
        uniffi_bindgen()  # the shared debug build, the library included
        lib = target_dir() / "debug" / "libsessionkit_ffi.so"
    print(f"{len(parse_api(api.read_text()))} members in {api}")
    failed = 0
    for lang in args.langs:
        missing = check(lang, lib, api)
        print(f"{lang}: {'ok' if not missing else 'missing ' + ', '.join(missing)}")
        failed += bool(missing)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Lines up the conformance transcripts of every language, scenario by scenario.

Usage: report.py [DIR]   (default: target/conformance, one <language>.json per runner)

A scenario fails if any language failed it, or if two languages that ran it recorded different
outcomes for any step. Every language of ORDER must have a transcript: one that has none fails
the run, unless its runner left `<language>.skipped` (the reason, e.g. no toolchain could be had)
in DIR, which is reported. Prints a table, then `conformance: N passed, N failed`; exits 1 on
any failure or difference.
"""
import json
import sys
from pathlib import Path

ORDER = ["rust", "python", "kotlin", "swift"]


def main() -> int:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "target" / "conformance"
    runs = {}
    for path in sorted(root.glob("*.json")):
        doc = json.loads(path.read_text())
        runs[doc["language"]] = {s["name"]: s for s in doc["scenarios"]}
    if not runs:
        print(f"conformance: no transcripts in {root}", file=sys.stderr)
        return 1
    absent = []
    for lang in ORDER:
        if lang in runs:
            continue
        skipped = root / f"{lang}.skipped"
        if skipped.exists():
            print(f"{lang}: skipped ({skipped.read_text().strip()})")
        else:
            absent.append(lang)
    languages = sorted(runs, key=lambda l: (ORDER.index(l) if l in ORDER else len(ORDER), l))
    names = sorted(set().union(*(r.keys() for r in runs.values())))
    width = max(len(n) for n in names)
    print(f"{'scenario':<{width}}  " + "  ".join(f"{l:<7}" for l in languages) + "  verdict")
    passed = failed = 0
    details = []
    for name in names:
        cells, transcripts = [], {}
        ok = True
        for lang in languages:
            s = runs[lang].get(name)
            if s is None:
                cells.append("missing")
                ok = False
                details.append(f"{name}: {lang} did not run it")
            elif s.get("skipped"):
                cells.append("skip")
            elif s["passed"]:
                cells.append("pass")
                transcripts[lang] = s["transcript"]
            else:
                cells.append("FAIL")
                ok = False
                details.append(f"{name}: {lang}: " + "; ".join(s["failures"]))
                transcripts[lang] = s["transcript"]
        langs = list(transcripts)
        for other in langs[1:]:
            diff = first_difference(transcripts[langs[0]], transcripts[other])
            if diff:
                ok = False
                details.append(f"{name}: {langs[0]} and {other} differ at {diff}")
        passed, failed = passed + ok, failed + (not ok)
        print(f"{name:<{width}}  " + "  ".join(f"{c:<7}" for c in cells) + ("  same" if ok else "  DIFFERS/FAILS"))
    if details:
        print("\n" + "\n".join(details))
    print(f"\nlanguages: {', '.join(languages)}")
    if absent:
        print(f"no transcript from {', '.join(absent)}: its runner did not run or did not finish")
    print(f"conformance: {passed} passed, {failed + len(absent)} failed")
    return 1 if failed or absent else 0


def first_difference(a, b):
    for x, y in zip(a, b):
        if x != y:
            return f"step {x.get('step')} ({x.get('do')}): {json.dumps(x.get('outcome'))} vs {json.dumps(y.get('outcome'))}"
    if len(a) != len(b):
        return f"step {min(len(a), len(b))}: one transcript is longer"
    return None


if __name__ == "__main__":
    sys.exit(main())

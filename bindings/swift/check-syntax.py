#!/usr/bin/env python3
"""Parses Swift sources with tree-sitter-swift and reports every syntax error.

Used by scripts/test-swift when no Swift toolchain is on PATH, so that a syntax error in the
package or its tests is caught on these machines instead of first on a Mac. It proves syntax
only: types, names and the tests themselves need `swift test`. The generated bindings are not
checked here: the grammar does not know some attributes they use (`@_documentation`).

Usage: check-syntax.py FILE...   (exit 1 if any file has an error)
"""
import sys

import tree_sitter_swift
from tree_sitter import Language, Parser


def errors(parser: Parser, source: bytes):
    """The ERROR and MISSING nodes, outermost first (an error's children add nothing)."""
    stack = [parser.parse(source).root_node]
    while stack:
        node = stack.pop()
        if node.type == "ERROR" or node.is_missing:
            yield node
        elif node.has_error:
            stack.extend(reversed(node.children))


def main(paths: list) -> int:
    parser = Parser(Language(tree_sitter_swift.language()))
    total = 0
    for path in paths:
        with open(path, "rb") as f:
            source = f.read()
        lines = source.split(b"\n")
        for node in errors(parser, source):
            row, col = node.start_point
            what = f"missing {node.type}" if node.is_missing else "syntax error"
            text = lines[row].decode(errors="replace").strip()
            print(f"{path}:{row + 1}:{col + 1}: {what}: {text[:100]}")
            total += 1
    print(f"swift syntax: {len(paths)} files parsed, {total} errors (tree-sitter-swift)")
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

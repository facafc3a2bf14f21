"""List functions longer than a limit (default 80 lines) and modules longer than another (600).

    python scripts/long_functions.py [--max-function 80] [--max-module 600] [ROOT]

A function may pass the limit when the line above its ``def`` (or its first body line) carries a
comment ``# long: REASON``; such functions are listed with their reason and do not fail the check.
Exit status 1 when a function without a reason or a module is over its limit. ``make lint`` runs it.
"""
from __future__ import annotations

import argparse
import ast
import os
import sys

PACKAGES = ("faceflow", "vid2vid", "reenact", "evaluation", "apps", "scripts")


def _reason(lines: list[str], node) -> str | None:
    first = node.decorator_list[0].lineno if node.decorator_list else node.lineno
    for ln in (first - 2, node.body[0].lineno - 1 if node.body else -1):
        if 0 <= ln < len(lines) and "# long:" in lines[ln]:
            return lines[ln].split("# long:", 1)[1].strip()
    return None


def scan(root: str, max_function: int, max_module: int):
    """(long functions as (path, line, name, length, reason or None), long modules as (path, lines))."""
    funcs, mods = [], []
    for pkg in PACKAGES:
        for folder, _, files in os.walk(os.path.join(root, pkg)):
            for f in sorted(files):
                if not f.endswith(".py"):
                    continue
                path = os.path.join(folder, f)
                with open(path) as fh:
                    text = fh.read()
                lines = text.splitlines()
                if len(lines) > max_module:
                    mods.append((os.path.relpath(path, root), len(lines)))
                for node in ast.walk(ast.parse(text, path)):
                    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        n = node.end_lineno - node.lineno + 1
                        if n > max_function:
                            funcs.append((os.path.relpath(path, root), node.lineno, node.name, n,
                                          _reason(lines, node)))
    return funcs, mods


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("root", nargs="?", default=os.path.join(os.path.dirname(__file__), ".."))
    p.add_argument("--max-function", type=int, default=80)
    p.add_argument("--max-module", type=int, default=600)
    args = p.parse_args(argv)
    funcs, mods = scan(args.root, args.max_function, args.max_module)
    bad = 0
    for path, line, name, n, reason in sorted(funcs):
        print(f"{path}:{line}: {name} has {n} lines" + (f" (long: {reason})" if reason else " and no '# long:' reason"))
        bad += reason is None
    for path, n in mods:
        print(f"{path}: {n} lines (limit {args.max_module})")
    bad += len(mods)
    if not bad:
        print(f"ok: no function over {args.max_function} lines without a reason, no module over {args.max_module}")
    return int(bad > 0)


if __name__ == "__main__":
    sys.exit(main())

"""The project's import graph: cycles between modules and imports against the layering.

    python scripts/import_graph.py [ROOT]      # exit 1 and the offenders, or 0 and "ok"

Every ``import`` and ``from ... import`` of the packages (function-local ones included, since a
cycle through a late import is still a cycle) becomes an edge between modules. Two kinds of edge
are left out: a module importing one of its own parent packages (Python loads the parents first)
and the ``if __name__ == "__main__":`` block (the command-line entry, not the library). The
packages are layered, each may import only those before it:

    faceflow  <  vid2vid  <  reenact  <  evaluation  <  apps

and inside faceflow the stages (sub-packages and the few top-level modules) are ordered too:

    errors < moved < runtime < io < geometry < ops < render < face < annotate < data < nets < engine
           < estimate < outputs < cli < commands < __main__

``tests/test_layering.py`` runs the same check.
"""
from __future__ import annotations

import ast
import os
import sys
from collections import defaultdict

LAYERS = ("faceflow", "vid2vid", "reenact", "evaluation", "apps")
# faceflow's sub-packages (and top-level modules) in pipeline order: each imports only itself and
# those before it. A module later in the list may import an earlier one, never the reverse.
STAGES = ("errors", "moved", "runtime", "io", "geometry", "ops", "render", "face", "annotate", "data", "nets",
          "engine", "estimate", "outputs", "cli", "commands", "__main__")


def find_modules(root: str, packages=LAYERS) -> dict[str, tuple[str, bool]]:
    """``{module name: (file path, is a package __init__)}`` of every .py file in ``packages``."""
    mods = {}
    for pkg in packages:
        for folder, _, files in os.walk(os.path.join(root, pkg)):
            for f in sorted(files):
                if f.endswith(".py"):
                    path = os.path.join(folder, f)
                    rel = os.path.relpath(path, root)[:-3].replace(os.sep, ".")
                    is_pkg = rel.endswith(".__init__")
                    mods[rel[:-len(".__init__")] if is_pkg else rel] = (path, is_pkg)
    return mods


def _targets(module: str, is_pkg: bool, node, mods) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if node.level:
        base = (module if is_pkg else module.rsplit(".", 1)[0]).split(".")
        base = ".".join(base[:len(base) - node.level + 1])
        target = base + ("." + node.module if node.module else "")
    else:
        target = node.module or ""
    return [target] + [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in mods]


def module_graph(root: str) -> dict[str, set[str]]:
    """Edges ``module -> imported project module`` (see the module docstring for what counts)."""
    mods = find_modules(root)
    graph: dict[str, set[str]] = defaultdict(set)
    for module, (path, is_pkg) in mods.items():
        with open(path) as f:
            tree = ast.parse(f.read(), path)
        tree.body = [n for n in tree.body if not (isinstance(n, ast.If) and "__main__" in ast.unparse(n.test))]
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for t in _targets(module, is_pkg, node, mods):
                while t not in mods and "." in t:
                    t = t.rsplit(".", 1)[0]
                # importing a.b.c first runs the packages a and a.b: each is an edge too, except
                # the importer's own parents (Python has loaded them before the importer)
                while t in mods:
                    if t != module and not module.startswith(t + "."):
                        graph[module].add(t)
                    if "." not in t:
                        break
                    t = t.rsplit(".", 1)[0]
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    for start in sorted(set(graph) | {t for ts in graph.values() for t in ts}):
        if start in index:
            continue
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on.add(start)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        x = stack.pop()
                        on.discard(x)
                        comp.append(x)
                        if x == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
            elif w not in index:
                index[w] = low[w] = counter[0]
                counter[0] += 1
                stack.append(w)
                on.add(w)
                work.append((w, iter(sorted(graph.get(w, ())))))
            elif w in on:
                low[v] = min(low[v], index[w])
    return sorted(out)


def against_layers(graph: dict[str, set[str]], layers=LAYERS) -> list[tuple[str, str]]:
    """Edges from a package to a package after it in ``layers``."""
    rank = {p: k for k, p in enumerate(layers)}
    return sorted((m, t) for m, ts in graph.items() for t in ts
                  if rank[t.split(".")[0]] > rank[m.split(".")[0]])


def stage(module: str) -> str | None:
    """The stage of a faceflow module (its sub-package, or the top-level module's name)."""
    parts = module.split(".")
    if parts[0] != "faceflow" or len(parts) == 1:
        return None
    return parts[1]


def against_stages(graph: dict[str, set[str]], stages=STAGES) -> list[tuple[str, str]]:
    """Edges inside faceflow from a stage to a later one in ``stages`` (same stage: allowed)."""
    rank = {p: k for k, p in enumerate(stages)}
    bad = []
    for m, ts in graph.items():
        for t in ts:
            a, b = stage(m), stage(t)
            if a is not None and b is not None and rank[b] > rank[a]:
                bad.append((m, t))
    return sorted(bad)


def main(argv: list[str]) -> int:
    root = argv[0] if argv else os.path.join(os.path.dirname(__file__), "..")
    graph = module_graph(root)
    unknown = sorted({stage(m) for m in find_modules(root)} - {None, *STAGES})
    found = [("cycle: " + " <-> ".join(c)) for c in cycles(graph)]
    found += [f"against the layers: {m} imports {t}" for m, t in against_layers(graph)]
    found += [f"against the stages: {m} imports {t}" for m, t in against_stages(graph)]
    found += [f"faceflow.{s} is in no stage: add it to STAGES in scripts/import_graph.py" for s in unknown]
    for line in found:
        print(line)
    if not found:
        print(f"ok: {len(graph)} modules import others, no cycle, layers {' < '.join(LAYERS)} respected, "
              f"faceflow stages {' < '.join(STAGES)} respected")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

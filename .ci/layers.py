#!/usr/bin/env python3
"""Checks the shape of the workspace: the import graph of dstorm's top-level
modules has no cycle and no upward edge (a module naming one of a higher
layer), and only the allowed files of apps and capi name dstorm directly.

Run from the repository root: python3 .ci/layers.py (exit 1 on a violation).
"""
import re
import sys
from pathlib import Path

# dstorm's modules, bottom to top: a module may use its own layer and the
# ones below it, never one above.
LAYERS = [
    ["error", "env", "hostlist", "wire", "layout"],
    ["secret", "auth", "config"],
    ["segment"],
    ["transport"],
    ["fault"],
    ["control", "membership"],
    ["object"],
    ["monitor"],
    ["group"],
    ["lib"],
]

# Files of apps and capi allowed to use dstorm itself rather than vol: the
# transport check, the benchmarks, and the launcher (which runs the
# coordinator).
DSTORM_USERS = [
    "apps/src/check.rs",
    "apps/src/launch.rs",
    "apps/src/bench/",
]

USE = re.compile(r"\bcrate::([a-z_][a-z0-9_]*)")


def top_module(src: Path, f: Path) -> str:
    rel = f.relative_to(src)
    return rel.parts[0].removesuffix(".rs")


def strip_comments(text: str) -> str:
    # Doc links and comments name modules without depending on them.
    return "\n".join(line.split("//", 1)[0] for line in text.splitlines())


def dstorm_graph(src: Path) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for f in sorted(src.rglob("*.rs")):
        m = top_module(src, f)
        graph.setdefault(m, set())
        for dep in USE.findall(strip_comments(f.read_text())):
            if dep != m:
                graph[m].add(dep)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found, state, stack = [], {}, []

    def visit(n: str) -> None:
        state[n] = 1
        stack.append(n)
        for d in sorted(graph.get(n, ())):
            if state.get(d) == 1:
                found.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n)
    return found


def main() -> int:
    root = Path(".")
    bad = []
    graph = dstorm_graph(root / "dstorm/src")
    layer = {m: i for i, ms in enumerate(LAYERS) for m in ms}
    for m in sorted(graph):
        if m not in layer:
            bad.append(f"dstorm module {m!r} has no layer in .ci/layers.py")
    for c in cycles(graph):
        bad.append("dstorm import cycle: " + " -> ".join(c))
    for m, deps in sorted(graph.items()):
        for d in sorted(deps):
            if m in layer and d in layer and layer[d] > layer[m]:
                bad.append(f"dstorm: {m} (layer {layer[m]}) uses {d} (layer {layer[d]}), a layer above")
    for crate in ["apps/src", "capi/src"]:
        for f in sorted((root / crate).rglob("*.rs")):
            path = f.as_posix()
            if any(path.startswith(a) for a in DSTORM_USERS):
                continue
            if re.search(r"\bdstorm::", strip_comments(f.read_text())):
                bad.append(f"{path} uses dstorm directly; use vol's re-exports")
    for b in bad:
        print(b)
    if bad:
        return 1
    print(f"layers: {len(graph)} dstorm modules, no cycle, no upward import; apps and capi use vol")
    return 0


if __name__ == "__main__":
    sys.exit(main())

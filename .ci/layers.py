#!/usr/bin/env python3
"""Checks the shape of the workspace: the import graph of dstorm's top-level
modules has no cycle and no upward edge (a module naming one of a higher
layer), only the allowed files of apps and capi name dstorm directly, the
Python binding (python/src) reaches the runtime through vol alone, and
its only unsafe code is in its buffer module.
Two size rules hold for every crate's src/: no file has more than
MAX_LINES lines before its first `#[cfg(test)]` line, and no struct has
more than MAX_FIELDS fields unless the comment block right above it (doc
comments, comments, attributes) says why in a sentence with the word
"fields".

Run from the repository root: python3 .ci/layers.py (exit 1 on a violation).
"""
import re
import sys
from pathlib import Path

# dstorm's modules, bottom to top: a module may use its own layer and the
# ones below it, never one above.
LAYERS = [
    ["error", "env", "backoff", "hostlist", "wire", "layout"],
    ["secret", "auth", "config"],
    ["segment"],
    ["transport"],
    ["fault"],
    ["control"],
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
    "apps/src/launch/",
    "apps/src/bench/",
]

USE = re.compile(r"\bcrate::([a-z_][a-z0-9_]*)")

# Size rules, for files under */src/ (integration tests are exempt).
MAX_LINES = 800
MAX_FIELDS = 12

STRUCT = re.compile(r"^\s*(?:pub(?:\([^)]*\))?\s+)?struct\s+([A-Za-z_][A-Za-z0-9_]*)\b")


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


def lines_before_tests(text: str) -> int:
    """Lines before the first `#[cfg(test)]` line (all of them if none)."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.strip().startswith("#[cfg(test)]"):
            return i
    return len(lines)


def strip_all_comments(text: str) -> str:
    # Block comments, then line comments (a field type holds no string).
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    return "\n".join(line.split("//", 1)[0] for line in text.splitlines())


def field_count(body: str) -> int:
    """Fields of a struct body (the text between its braces)."""
    body = strip_all_comments(body)
    body = re.sub(r"#!?\[[^\]]*\]", " ", body)  # attributes
    body = body.replace("->", " ")
    depth, fields, item = 0, 0, ""
    for ch in body:
        if ch in "([{<":
            depth += 1
        elif ch in ")]}>":
            depth -= 1
        elif ch == "," and depth == 0:
            fields += bool(item.strip())
            item = ""
            continue
        item += ch
    return fields + bool(item.strip())


def says_why(lines: list[str], at: int) -> bool:
    """Whether the comments and attributes right above line `at` use the
    word "fields"."""
    i = at - 1
    while i >= 0:
        line = lines[i].strip()
        if not (line.startswith("//") or line.startswith("#[") or line.startswith("*")
                or line.startswith("/*") or line.endswith("]") or line.endswith(")")):
            break
        if line.startswith(("//", "/*", "*")) and re.search(r"\bfields\b", line, re.I):
            return True
        i -= 1
    return False


def big_structs(f: Path) -> list[tuple[int, str, int]]:
    """(line, name, fields) of each struct in `f` with more than MAX_FIELDS
    fields and no comment above it saying why."""
    text = f.read_text()
    lines = text.splitlines()
    found = []
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line) + 1)
    for n, line in enumerate(lines):
        m = STRUCT.match(strip_comments(line))
        if not m:
            continue
        # The body: from the first `{` after the name (unless a `;` or `(`
        # ends a unit or tuple struct first) to its matching `}`.
        start = offsets[n] + m.end()
        rest = text[start:]
        brace = rest.find("{")
        ends = [i for i in (rest.find(";"), rest.find("(")) if i >= 0]
        if brace < 0 or (ends and min(ends) < brace and "where" not in rest[:brace]):
            continue
        depth, i = 0, brace
        while i < len(rest):
            if rest[i] == "{":
                depth += 1
            elif rest[i] == "}":
                depth -= 1
                if depth == 0:
                    break
            i += 1
        k = field_count(rest[brace + 1:i])
        if k > MAX_FIELDS and not says_why(lines, n):
            found.append((n + 1, m.group(1), k))
    return found


def size_rules(root: Path) -> list[str]:
    bad = []
    for f in sorted(root.glob("*/src/**/*.rs")):
        path = f.as_posix()
        n = lines_before_tests(f.read_text())
        if n > MAX_LINES:
            bad.append(f"{path}: {n} lines before its #[cfg(test)] module (at most {MAX_LINES})")
        for line, name, k in big_structs(f):
            bad.append(
                f"{path}:{line}: struct {name} has {k} fields (at most {MAX_FIELDS} "
                f"unless the comment above it says why its fields belong together)"
            )
    return bad


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
    for f in sorted((root / "python/src").rglob("*.rs")):
        text = strip_comments(f.read_text())
        if re.search(r"\bdstorm::", text):
            bad.append(f"{f.as_posix()} uses dstorm directly; use vol's re-exports")
        if f.name != "buffer.rs" and re.search(r"\bunsafe\b", text):
            bad.append(f"{f.as_posix()} has unsafe code; the binding keeps it in python/src/buffer.rs")
    for crate in ["apps/src", "capi/src"]:
        for f in sorted((root / crate).rglob("*.rs")):
            path = f.as_posix()
            if any(path.startswith(a) for a in DSTORM_USERS):
                continue
            if re.search(r"\bdstorm::", strip_comments(f.read_text())):
                bad.append(f"{path} uses dstorm directly; use vol's re-exports")
    bad += size_rules(root)
    for b in bad:
        print(b)
    if bad:
        return 1
    print(
        f"layers: {len(graph)} dstorm modules, no cycle, no upward import; apps, capi and python use vol; "
        f"no file over {MAX_LINES} lines before its tests, no struct over {MAX_FIELDS} fields unsaid"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The import graph of the host package `pumpctl`, read from its source with `ast`.

Every `import` and `from ... import` counts, at module level or inside a function (a lazy import
is still an arrow between the parts). `from . import x` counts as an import of the submodule
`x` when `x` is a module, else of the package.
"""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE_DIR = REPO / "host_tools" / "pumpctl"


def module_names(root: Path = PACKAGE_DIR) -> dict[str, Path]:
    """Dotted module name -> source file, for every .py under `root` (the package `pumpctl`)."""
    out: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _resolve(current: str, is_package: bool, level: int, module: str | None) -> str:
    if level == 0:
        return module or ""
    base = current.split(".")
    if not is_package:
        base = base[:-1]
    if level > 1:
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([module] if module else []))


def imports_of(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The modules of the package that `name` (source `path`) imports, anywhere in its body."""
    tree = ast.parse(path.read_text(), str(path))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(name, is_package, node.level, node.module)
            targets = []
            for alias in node.names:
                sub = base + "." + alias.name if base else alias.name
                targets.append(sub if sub in known else base)
        else:
            continue
        for target in targets:
            # `import pumpctl.a.b` imports the innermost known module of the dotted name
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def graph(root: Path = PACKAGE_DIR) -> dict[str, set[str]]:
    known = module_names(root)
    return {name: imports_of(name, path, known) for name, path in known.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected part of more than one module (Tarjan), each as a sorted list."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(g.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            part = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                part.append(w)
                if w == v:
                    break
            if len(part) > 1:
                out.append(sorted(part))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def path_between(g: dict[str, set[str]], start: str, goal: str) -> list[str]:
    """One shortest chain of imports from `start` to `goal` (for the failure message)."""
    seen = {start: [start]}
    todo = [start]
    while todo:
        nxt = []
        for v in todo:
            for w in sorted(g.get(v, ())):
                if w not in seen:
                    seen[w] = seen[v] + [w]
                    if w == goal:
                        return seen[w]
                    nxt.append(w)
        todo = nxt
    return []

"""The folder layout is the architecture: technic/ never imports stream/; no import circles in stream/."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path, package: str):
    mod = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
    base = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                b = base
                for _ in range(node.level - 1):
                    b = b.rsplit(".", 1)[0]
                yield f"{b}.{node.module}" if node.module else b
            else:
                yield node.module


def test_technic_never_imports_stream():
    bad = [(str(p.relative_to(ROOT)), m) for p in (ROOT / "technic").rglob("*.py")
           for m in _imports(p, "technic") if m == "stream" or m.startswith("stream.")]
    assert bad == []


def test_no_import_circles_in_stream():
    mods = {".".join(p.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): p
            for p in (ROOT / "stream").rglob("*.py")}
    graph = {m: {i for i in _imports(p, "stream") if i in mods and i != m} for m, p in mods.items()}
    for m in graph:  # drop package __init__ edges (a package importing its own modules is not a circle)
        graph[m] = {i for i in graph[m] if not m.startswith(i + ".")}
    seen, stack, cycles = set(), [], []

    def visit(m):
        if m in stack:
            cycles.append(stack[stack.index(m):] + [m])
            return
        if m in seen:
            return
        seen.add(m)
        stack.append(m)
        for n in sorted(graph[m]):
            visit(n)
        stack.pop()

    for m in sorted(graph):
        visit(m)
    assert cycles == []

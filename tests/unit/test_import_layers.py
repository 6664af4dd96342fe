"""Dependencies point one way, checked on the source (every import, lazy ones included).

    services.core -> services.stream -> stages -> services.app -> CLIs
    models never imports services; nothing in services or models imports bench.

A stage (ingest, classify, trends, index, alerts) imports only core, the stream package,
its own modules and models; only ``services/app.py`` imports agents. The HTTP API reads what
the stages keep (their stores), never their agents. No import circle anywhere.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("services", "models", "bench")
STAGES = ("ingest", "classify", "trends", "index", "alerts")
# what the API (and the feed/demo tools) may read of a stage: stores and pure lookups
READABLE = {
    "services.alerts.subscriptions", "services.alerts.delivery_state", "services.alerts.egress",
    "services.trends.store", "services.trends.windows",
}


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: Path) -> set[str]:
    found: set[str] = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # "from a import b" runs a (its __init__) and, when b is a submodule, a.b
            targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for t in targets:
            if t in MODULES and t != name:
                found.add(t)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}


def _stage(mod: str) -> str | None:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "services" and parts[1] in STAGES else None


def test_no_import_circles() -> None:
    graph = GRAPH
    seen: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(m: str, stack: list[str]) -> None:
        seen[m] = 1
        stack.append(m)
        for t in sorted(graph[m]):
            if seen.get(t) == 1:
                cycles.append(stack[stack.index(t):] + [t])
            elif t not in seen:
                visit(t, stack)
        stack.pop()
        seen[m] = 2

    for m in sorted(graph):
        if m not in seen:
            visit(m, [])
    assert not cycles, "import circles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_models_and_services_never_reach_back() -> None:
    bad = [f"{m} imports {t}" for m, deps in GRAPH.items() for t in deps
           if (m.startswith("models") and not t.startswith("models"))
           or (m.startswith("services") and t.startswith("bench"))]
    assert not bad, "\n".join(bad)


def test_core_and_stream_import_no_stage() -> None:
    # ``models`` is the layer below every service (text handling shared with training, e.g.
    # the Chinese normaliser the index folds titles with): core and stream may read it too.
    bad = [f"{m} imports {t}" for m, deps in GRAPH.items() for t in deps
           if not t.startswith("models.")
           and ((m.startswith("services.core") and not t.startswith("services.core"))
                or (m.startswith("services.stream")
                    and not t.startswith(("services.core", "services.stream"))))]
    assert not bad, "\n".join(bad)


def test_stages_never_import_each_other() -> None:
    bad = []
    for m, deps in GRAPH.items():
        own = _stage(m)
        for t in deps:
            other = _stage(t)
            if other is None or other == own:
                continue
            if own is not None or (m.startswith(("services.api", "services.feed"))
                                   and t not in READABLE):
                bad.append(f"{m} imports {t}")
    assert not bad, "\n".join(sorted(bad))


def test_only_app_imports_agents() -> None:
    bad = [f"{m} imports {t}" for m, deps in GRAPH.items() for t in deps
           if t.endswith(".agent") and _stage(t) and m != "services.app"]
    assert not bad, "\n".join(bad)

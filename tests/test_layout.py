"""The package's shape: small modules, no import cycle, the sending chain in one place."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "mptrace"
MODULES = sorted(PACKAGE.glob("*.py"))

#: Imports of mptrace's own modules made inside a function, each for a reason:
#: they pull in a heavy dependency that most sessions never need.
LAZY_ALLOWED = {
    ("_events", "_otel_values"): "the OpenTelemetry SDK, for sinks that export",
    (
        "_console",
        "_console_sink",
    ): "the sink, in the listener; init() needs the options",
    ("_console_sink", "_render"): "structlog's console renderer, for the console only",
    ("_console_sink", "_progress"): "rich, for the progress line on a terminal only",
    ("_sinks", "_otlp"): "the OTLP exporters and gRPC, for OTLP sinks only",
    ("_sinks", "_rotate"): "jsonl's rotation, where exporters are checked or built",
    (
        "_sinks",
        "_console",
    ): "the console's options, where exporters are checked or built",
    ("_participant", "_render"): "the renderer, once the listener is gone",
    # The command loads what its subcommand uses, so `mptrace logs` starts fast.
    ("_cli", "_render"): "structlog's console renderer",
    ("_cli", "_report"): "the report",
    ("_cli", "_report_html"): "the HTML page",
    ("_cli", "_report_text"): "the text report",
    ("_cli", "_timeline"): "the trace-event writer",
    ("_cli", "_run"): "a whole session (the OpenTelemetry SDK), for `run` only",
    ("_select", "_render"): "structlog's console renderer, for span/lifecycle text",
}


def _imports(path: Path) -> tuple[set[str], set[str]]:
    """(module-level, function-level) mptrace modules *path* imports."""
    tree = ast.parse(path.read_text())
    top: set[str] = set()
    lazy: set[str] = set()

    def names(node: ast.AST) -> set[str]:
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                return {node.module.split(".")[0]}
            return {a.name for a in node.names}
        return set()

    for node in tree.body:
        if isinstance(node, ast.If):  # TYPE_CHECKING blocks import nothing at run time
            continue
        top |= names(node)
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                lazy |= names(inner)
    return top, lazy


class TestLayout:
    @pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
    def test_no_module_passes_400_lines(self, path):
        """A module past ~400 lines is two modules."""
        assert len(path.read_text().splitlines()) <= 400

    def test_no_import_cycle(self):
        """Module-level imports among mptrace's modules form no cycle."""
        graph = {p.stem: _imports(p)[0] for p in MODULES}
        done: set[str] = set()

        def visit(node: str, path: list[str]) -> None:
            assert node not in path, "import cycle: " + " -> ".join([*path, node])
            if node in done:
                return
            for nxt in graph.get(node, ()):
                if nxt in graph and nxt != "__init__":
                    visit(nxt, [*path, node])
            done.add(node)

        for name in graph:
            visit(name, [])

    def test_lazy_imports_only_for_heavy_dependencies(self):
        """A function-level import of an mptrace module is one of the listed few."""
        found = {
            (p.stem, mod)
            for p in MODULES
            for mod in _imports(p)[1]
            if mod not in ("__init__",)
        }
        assert found <= set(LAZY_ALLOWED), found - set(LAZY_ALLOWED)

"""The package's shape: a folder per side, imports one way, small modules.

Each folder of ``src/mptrace`` runs on one side (its ``__init__`` says
which); a module may import its own folder and the folders below it::

    _schema  <-  _participant  <-  _instrument  <-  _session
       ^  ^           |                                 |
       |  '-- _render <'                                | (the sink registry,
       |        ^                                       |  to check exporters=)
       |        '---------  _listener  <----------------'
       '-------------------  _cli  (--> _session.run, for `mptrace run`)

The public leaves (``exceptions``, ``sinks``, ``_version``) import nothing of
mptrace; ``processors`` only the schema.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "src" / "mptrace"
MODULES = sorted(PACKAGE.rglob("*.py"))

LEAVES = {"exceptions", "sinks", "_version"}

#: What each side may import, besides itself and the leaves.
ALLOWED = {
    "_schema": set(),
    "processors": {"_schema"},
    "_render": {"_schema"},
    "_participant": {"_schema", "_render", "processors"},
    "_instrument": {"_schema", "_participant", "processors"},
    "_session": {"_schema", "_participant", "_instrument", "_listener", "processors"},
    "_listener": {"_schema", "_render", "processors"},
    "_cli": {"_schema", "_render", "_session"},
}

#: Where one side reaches into another only through named modules.
NARROW = {
    ("_session", "_listener"): {"_listener.registry", "_listener.jsonl"},
    ("_cli", "_session"): {"_session.run"},
}

#: Imports of mptrace's own modules made inside a function, each for a reason:
#: they pull in a heavy dependency that most sessions never need.
LAZY_ALLOWED = {
    (
        "_listener.console",
        "_listener.console_sink",
    ): "the sink, in the listener; init() needs the options",
    (
        "_listener.console_sink",
        "_render.lines",
    ): "structlog's console renderer, for the console only",
    (
        "_listener.console_sink",
        "_listener.progress",
    ): "rich, for the progress line on a terminal only",
    ("_listener.registry", "_listener.otlp"): "the OTLP exporters and gRPC",
    ("_instrument.process", "__init__"): "the stdlib instrumented in a drop-in's child",
    (
        "_instrument.engines_dask",
        "_instrument.dask_tasks",
    ): "distributed's plugin class, in a Dask worker only",
    (
        "_participant.participant",
        "_render.lines",
    ): "the renderer, once the listener is gone",
    # init() starts the listener first, then imports the rest meanwhile.
    ("_session.session", "_instrument.root"): "while the listener's interpreter starts",
    (
        "_session.session",
        "_instrument.stdlib",
    ): "while the listener's interpreter starts",
    ("_session.session", "_listener.jsonl"): "while the listener's interpreter starts",
    (
        "_session.session",
        "_participant.participant",
    ): "while the listener's interpreter starts",
    ("_session.session", "_schema.events"): "while the listener's interpreter starts",
    ("_session.session", "_session.env"): "while the listener's interpreter starts",
    ("_session.session", "_session.exit"): "while the listener's interpreter starts",
    ("_session.session", "_session.reach"): "while the listener's interpreter starts",
    ("_session.session", "_session.restart"): "while the listener's interpreter starts",
    ("_session.session", "_session.waited"): "while the listener's interpreter starts",
    ("_session.joined", "_participant.participant"): "in a spawned child only",
    ("_schema.joinfile", "_schema.config"): "the owner starts its listener before it",
    # The command loads what its subcommand uses, so `mptrace logs` starts fast.
    ("_cli.main", "_render.lines"): "structlog's console renderer",
    ("_cli.main", "_cli.report"): "the report",
    ("_cli.main", "_cli.report_html"): "the HTML page",
    ("_cli.main", "_cli.report_text"): "the text report",
    ("_cli.main", "_cli.timeline"): "the trace-event writer",
    ("_cli.main", "_session.run"): "a whole session (the OpenTelemetry SDK), for `run`",
    (
        "_cli.selection",
        "_render.lines",
    ): "structlog's renderer, for span/lifecycle text",
}


def _name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


NAMES = {_name(p) for p in MODULES}


def _targets(node: ast.AST) -> set[str]:
    """The mptrace modules one import statement loads."""
    found: set[str] = set()
    if isinstance(node, ast.ImportFrom) and node.level:
        raise AssertionError("mptrace's own imports are absolute")
    if isinstance(node, ast.ImportFrom) and node.module:
        if node.module == "mptrace" or node.module.startswith("mptrace."):
            base = node.module.removeprefix("mptrace").removeprefix(".")
            for alias in node.names:
                full = f"{base}.{alias.name}" if base else alias.name
                found.add(full if full in NAMES else base)
    elif isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name.startswith("mptrace."):
                found.add(alias.name.removeprefix("mptrace."))
    found.discard("")
    return found


def _imports(path: Path) -> tuple[set[str], set[str]]:
    """(module-level, function-level) mptrace modules *path* imports."""
    tree = ast.parse(path.read_text())
    top: set[str] = set()
    lazy: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.If):  # TYPE_CHECKING blocks import nothing at run time
            continue
        top |= _targets(node)
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                lazy |= _targets(inner)
    return top, lazy


def _side(name: str) -> str:
    return name.split(".")[0]


GRAPH = {_name(p): _imports(p) for p in MODULES}


class TestLayout:
    @pytest.mark.parametrize("path", MODULES, ids=_name)
    def test_no_module_passes_400_lines(self, path):
        """A module past ~400 lines is two modules."""
        assert len(path.read_text().splitlines()) <= 400

    @pytest.mark.parametrize(
        "folder",
        sorted(p for p in PACKAGE.iterdir() if p.is_dir() and p.name[0] == "_"),
    )
    def test_every_folder_says_where_it_runs(self, folder):
        """Each side's ``__init__`` is a docstring that says where it runs."""
        init = folder / "__init__.py"
        tree = ast.parse(init.read_text())
        assert ast.get_docstring(tree), f"{folder.name}/__init__.py has no docstring"
        assert len(tree.body) == 1, "a side's __init__ holds its docstring alone"

    def test_imports_flow_one_way(self):
        """No module imports a side its own side may not, lazily or not."""
        wrong = []
        for name, (top, lazy) in GRAPH.items():
            side = _side(name)
            if side in ("__init__", "__main__", "pytest_plugin", "dask"):
                continue  # the public face may load anything
            for target in top | lazy:
                other = _side(target)
                if other == side or target in LEAVES:
                    continue
                if side in LEAVES or other not in ALLOWED.get(side, set()):
                    wrong.append(f"{name} -> {target}")
                elif target not in NARROW.get((side, other), {target}):
                    wrong.append(f"{name} -> {target} (only {NARROW[(side, other)]})")
        assert not wrong, wrong

    def test_no_import_cycle(self):
        """Imports among mptrace's modules, lazy ones too, form no cycle."""
        graph = {name: top | lazy for name, (top, lazy) in GRAPH.items()}
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
            (name, target)
            for name, (top, lazy) in GRAPH.items()
            for target in lazy - top
            if _side(name) not in ("__init__", "pytest_plugin")
        }
        assert found <= set(LAZY_ALLOWED), found - set(LAZY_ALLOWED)

    def test_a_child_loads_no_listener_session_or_command_code(self):
        """What a spawned child imports to join reaches none of the other sides."""
        seen: set[str] = set()
        todo = ["_instrument.process", "_instrument.pool", "_instrument.traced"]
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            todo.extend(GRAPH[name][0])
        assert not {n for n in seen if _side(n) in ("_listener", "_session", "_cli")}

"""The rooms of app/ keep their walls: no import cycle, no SQL or Azure SDK in handlers, each SDK in its room.

Read from the source with `ast`: every import counts, at module level or inside a function, so an import
moved into a function to dodge a cycle still shows as the cycle it is.
"""
from __future__ import annotations

import ast
from pathlib import Path

APP = Path(__file__).resolve().parents[1] / "app"


def _modules() -> dict[str, Path]:
    found = {}
    for path in APP.rglob("*.py"):
        if "migrations" in path.parts:
            continue
        parts = path.relative_to(APP.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = _modules()


def _imports(path: Path) -> set[str]:
    """Every module path imported anywhere in the file (absolute imports; app/ uses no relative ones)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path}: relative import"
            named = {f"{node.module}.{alias.name}" for alias in node.names}
            subs = named & MODULES.keys()
            if node.module.startswith("app"):  # `from app import jobs` is app.jobs, not the package app
                names.update(subs if len(subs) == len(node.names) else {node.module, *subs})
            else:
                names.update({node.module, *named})
    return names


def _owner(name: str) -> str | None:
    """The app module an imported name lives in."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


GRAPH = {module: {owner for name in _imports(path) if name.startswith("app")
                  if (owner := _owner(name)) and owner != module} for module, path in MODULES.items()}


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(module):
        index[module] = low[module] = counter[0]
        counter[0] += 1
        stack.append(module)
        on_stack.add(module)
        for other in GRAPH[module]:
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in on_stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            component = []
            while True:
                other = stack.pop()
                on_stack.discard(other)
                component.append(other)
                if other == module:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(GRAPH):
        if module not in index:
            visit(module)
    return found


def test_the_import_graph_of_app_has_no_cycle():
    assert len(GRAPH) > 40  # the whole of app/ was read
    assert _cycles() == []


def test_services_defer_jobs_by_name_and_never_import_the_tasks():
    from app.jobs import procrastinate_app

    task_modules = set(procrastinate_app.import_paths)  # a task module may share another's helpers (one_run)
    assert "app.jobs.tasks" in task_modules and task_modules <= MODULES.keys()
    importers = sorted(m for m, deps in GRAPH.items() if deps & task_modules and m not in task_modules)
    assert importers == []


def test_handlers_hold_no_sql_and_no_sdk():
    for module, path in MODULES.items():
        if module.startswith("app.api"):
            forbidden = {n for n in _imports(path) if n.startswith(("sqlalchemy", "psycopg", "azure", "app.extensions",
                                                                    "app.models", "app.storage"))}
            assert forbidden == set(), f"{module} imports {sorted(forbidden)}"


def test_each_azure_sdk_is_imported_in_its_own_room_only():
    rooms = {"azure.storage": "app.storage", "azure.ai.ml": "app.azureml"}
    for module, path in MODULES.items():
        for sdk, room in rooms.items():
            if any(name.startswith(sdk) for name in _imports(path)):
                assert module == room or module.startswith(room + "."), f"{module} imports {sdk}"


def test_no_app_module_is_imported_inside_a_function():
    """Imports of app modules sit at the top, where the graph above sees them plainly."""
    inside = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    names = ([a.name for a in inner.names] if isinstance(inner, ast.Import) else
                             [inner.module or ""] if isinstance(inner, ast.ImportFrom) else [])
                    inside += [f"{module}.{node.name} imports {n}" for n in names if n == "app" or n.startswith("app.")]
    assert inside == []


def test_services_never_reach_into_the_web_framework():
    """Use cases run the same from a request, a job or a test: who acts comes from app.auth.policy.acting_caller."""
    for module, path in MODULES.items():
        if module.startswith("app.services"):
            web = {n for n in _imports(path) if n.startswith(("connexion", "starlette", "app.auth.connexion_glue",
                                                              "app.api", "flask.request"))}
            assert web == set(), f"{module} imports {sorted(web)}"

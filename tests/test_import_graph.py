"""No import cycle in ``common/``: the graph of its modules' imports, read from the source with
``ast``, is acyclic.

Every ``import`` statement counts, also those inside functions: a function-level import that
closes a cycle is the usual way to hide one (``common/data.py`` used to import the loader at its
bottom to register datasets). Names imported by string at run time are not edges: the registries
import their dataset and paper modules by name at the first lookup (``common/registry.py``), the
one place registration happens, and those modules import ``common.data``, not the other way round.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _module(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _from_targets(node: ast.ImportFrom, module: str, is_package: bool, modules) -> set[str]:
    """What ``from X import a, b`` depends on: each name that is a submodule of X (``from . import
    loader``), and X itself if any name is not (a name defined in X)."""
    if node.level:
        parts = module.split(".")
        base = parts[: len(parts) - node.level + (1 if is_package else 0)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    subs = {f"{target}.{a.name}" for a in node.names} & set(modules)
    return subs | ({target} if len(subs) < len(node.names) else set())


def import_graph(package: Path) -> dict[str, set[str]]:
    """module -> the modules of ``package`` it imports (anywhere in its source)."""
    files = {_module(p, package.parent): p for p in package.rglob("*.py")}
    graph = {}
    for mod, path in files.items():
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                names = _from_targets(node, mod, path.name == "__init__.py", files)
            else:
                continue
            edges |= {n for n in names if n in files and n != mod}
        graph[mod] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as ``[a, b, ..., a]``, or None (depth-first search)."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(n):
        state[n] = 1
        path.append(n)
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                return path[path.index(m):] + [m]
            if m not in state:
                found = visit(m)
                if found:
                    return found
        state[n] = 2
        path.pop()
        return None

    for n in sorted(graph):
        if n not in state:
            found = visit(n)
            if found:
                return found
    return None


def test_common_has_no_import_cycle():
    graph = import_graph(ROOT / "common")
    assert "common.data" in graph and "common.aggregate.cli" in graph
    assert graph["common.image_datasets"] >= {"common.data", "common.loader"}  # the edges are read
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle in common/: " + " -> ".join(cycle)


@pytest.mark.parametrize("source,cycle", [
    ("from .b import x\n", ["a", "b", "a"]),  # module level
    ("def f():\n    from . import b\n", ["a", "b", "a"]),  # function level counts too
    ("import json\n", None),
    ("from . import c\n", None),  # a sibling module, not the package's own names
    ("from . import b, name_in_init\n", ["a", "b", "a"]),
])
def test_the_check_finds_a_cycle(tmp_path, source, cycle):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text(source)
    (pkg / "b.py").write_text("import pkg.a\n")
    (pkg / "c.py").write_text("")
    found = find_cycle(import_graph(pkg))
    assert found == (None if cycle is None else [f"pkg.{m}" for m in cycle])


def test_registration_needs_no_import_of_the_dataset_modules():
    """A fresh interpreter that imports only ``common.data`` knows every built-in dataset at the
    first lookup (the registry imports them), and ``common.data`` itself imports no dataset module."""
    import subprocess
    import sys

    code = ("import sys, common.data as d; "
            "assert 'common.image_datasets' not in sys.modules and 'common.loader' not in sys.modules; "
            "print(sorted(d.DATASETS.names()))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    for name in ("cifar10", "cifar100", "digits", "imagenet", "mnist", "random", "tiny_imagenet", "airfoil"):
        assert f"'{name}'" in out.stdout

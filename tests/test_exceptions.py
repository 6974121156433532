"""One error tree (tasks/exceptions.py): every error Refinery raises on purpose is a RefineryError,
on the branch its docstring draws, and the modules that raised it before still name the same class."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from refinery.tasks import exceptions
from refinery.tasks.exceptions import (
    AccountingError,
    CatalogError,
    ClusterError,
    ConfigError,
    DropRateError,
    GenerationError,
    HomeBusyError,
    InputError,
    ModelError,
    OnnxExportError,
    QuerySetError,
    RefilterError,
    RefineryError,
    WorkerPreflightError,
)

ROOT = Path(__file__).parents[1]

# class -> its parent in the tree
TREE = {
    ConfigError: RefineryError, InputError: RefineryError, QuerySetError: InputError, RefilterError: InputError,
    CatalogError: RefineryError, HomeBusyError: CatalogError, ClusterError: RefineryError,
    WorkerPreflightError: ClusterError, ModelError: RefineryError, GenerationError: ModelError,
    OnnxExportError: ModelError, AccountingError: RefineryError, DropRateError: RefineryError,
}

# where each class was defined before the tree, and is still imported from
OLD_HOMES = {
    "refinery.tasks.books": AccountingError, "refinery.flows.runtime": WorkerPreflightError,
    "refinery.flows.quality": RefilterError, "refinery.tasks.evaluate.queries": QuerySetError,
    "refinery.tasks.config": ConfigError, "refinery.tasks.synthesize.generators.http": GenerationError,
    "refinery.tasks.onnx_export": OnnxExportError, "refinery.storage.layout": HomeBusyError,
    "refinery.storage.catalog": CatalogError, "refinery.storage": CatalogError,
}


@pytest.mark.parametrize("cls, parent", TREE.items(), ids=lambda c: getattr(c, "__name__", ""))
def test_each_class_hangs_on_its_branch(cls, parent):
    assert parent in cls.__bases__
    assert issubclass(cls, RefineryError)


def test_the_docstring_draws_the_tree_the_classes_make():
    lines = exceptions.__doc__.splitlines()
    root = next(line for line in lines if line.strip().startswith("RefineryError"))
    stack = [(root.index("RefineryError"), "RefineryError")]  # (column of the name, name)
    drawn = {}
    for line in lines:
        if "── " not in line:
            continue
        column = line.index("── ") + 3
        name = line[column:].split()[0]
        while stack[-1][0] >= column:
            stack.pop()
        drawn[name] = stack[-1][1]
        stack.append((column, name))
    assert drawn == {cls.__name__: parent.__name__ for cls, parent in TREE.items()}
    assert set(exceptions.__all__) == {c.__name__ for c in TREE} | {"RefineryError"}


def test_user_mistakes_stay_value_errors():
    """Callers that catch ValueError for a bad config or input (the CLI's refilter did) still do."""
    for cls in (ConfigError, InputError, QuerySetError, RefilterError):
        assert issubclass(cls, ValueError)
    for cls in (CatalogError, ClusterError, ModelError, AccountingError):
        assert not issubclass(cls, ValueError)


@pytest.mark.parametrize("module, cls", OLD_HOMES.items())
def test_old_homes_name_the_same_class(module, cls):
    assert getattr(importlib.import_module(module), cls.__name__) is cls


def test_no_error_class_is_defined_outside_the_tree():
    for path in [*ROOT.glob("flows/**/*.py"), *ROOT.glob("tasks/**/*.py"), *ROOT.glob("storage/**/*.py")]:
        if path.name == "exceptions.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef):
                assert not node.name.endswith(("Error", "Exception")), f"{path}: class {node.name}"


def test_the_tree_module_imports_nothing_of_the_project():
    tree = ast.parse((ROOT / "tasks" / "exceptions.py").read_text())
    imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in imported if m and m.startswith("refinery")]

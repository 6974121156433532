"""One import namespace: what `pip install .` installs is `refinery.*` and nothing else at the top level.

The design card keeps `flows/`, `tasks/` and `storage/` at the repository's top level; installed
as top-level modules they would collide with anything so named in a user's environment (a Dask
worker's `storage` spill folder did). tests/services/test_dask_cluster.py runs workers from a
directory holding such folders; this test checks the wheel itself.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("flows", "tasks", "storage")


def test_the_wheel_installs_only_the_refinery_namespace(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--wheel-dir", str(tmp_path), str(ROOT)], check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("refinery-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"refinery"}
    # every module of the three folders is in the wheel, under refinery.<folder>
    sources = {f"refinery/{p.relative_to(ROOT).as_posix()}" for f in FOLDERS for p in (ROOT / f).rglob("*.py")
               if "__pycache__" not in p.parts}
    assert sources <= set(names), sorted(sources - set(names))
    entry = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "refinery = refinery.flows.cli:app" in entry


def test_no_module_imports_the_folders_as_top_level_packages():
    offenders = []
    for folder in (*FOLDERS, "bench"):
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
                offenders += [f"{path.relative_to(ROOT)}:{node.lineno} {n}" for n in names
                              if n.split(".")[0] in FOLDERS]
    assert not offenders, offenders


def test_every_package_the_code_imports_is_declared():
    """A third-party import in flows/, tasks/ or storage/ names a distribution pyproject.toml depends on,
    not one that only arrives as a dependency of another (markdown, scipy and tqdm once did)."""
    import importlib.metadata
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    declared = {canonicalize_name(Requirement(r).name)
                for r in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    providers = importlib.metadata.packages_distributions()
    undeclared = []
    for folder in FOLDERS:
        for path in (ROOT / folder).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else [])
                for top in {n.split(".")[0] for n in names} - {"refinery", "__future__"} - sys.stdlib_module_names:
                    if not declared & {canonicalize_name(d) for d in providers.get(top, [])}:
                        undeclared.append(f"{path.relative_to(ROOT)}:{node.lineno} {top} ({providers.get(top)})")
    assert not undeclared, undeclared

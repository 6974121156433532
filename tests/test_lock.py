"""The lock files agree with pyproject.toml, and the environment the tests run in is the locked one.

`make install` installs `requirements.lock` (pip-compile'd from pyproject.toml, with hashes) and
`requirements-nodeps.lock` (the packages that ship models, installed without their dependencies).
A requirement added to pyproject.toml without `make lock`, a pin edited by hand that no longer
satisfies pyproject, or a venv that drifted from the lock fails here, in `make test` and so in CI.
"""

from __future__ import annotations

import importlib.metadata
import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
LOCKS = ("requirements.lock", "requirements-nodeps.lock")
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def pins(name: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for line in (ROOT / name).read_text().splitlines():
        if m := PIN.match(line):
            found[canonicalize_name(m.group(1))] = m.group(2)
    return found


def locked() -> dict[str, str]:
    return {k: v for name in LOCKS for k, v in pins(name).items()}


def project_requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = [Requirement(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]]
    return [r for r in reqs if r.marker is None or r.marker.evaluate()]


def test_every_requirement_of_pyproject_is_pinned_within_its_range():
    lock = locked()
    missing = [str(r) for r in project_requirements() if canonicalize_name(r.name) not in lock]
    assert not missing, f"not in the lock (run `make lock`): {missing}"
    outside = [f"{r} (locked {lock[canonicalize_name(r.name)]})" for r in project_requirements()
               if not r.specifier.contains(lock[canonicalize_name(r.name)], prereleases=True)]
    assert not outside, f"locked versions outside pyproject's ranges (run `make lock`): {outside}"


def test_every_pin_has_a_hash():
    for name in LOCKS:
        text = (ROOT / name).read_text()
        entries = re.split(r"\n(?=[A-Za-z0-9])", text.split("\n", 1)[1] if text.startswith("#") else text)
        for entry in entries:
            if PIN.match(entry):
                assert "--hash=sha256:" in entry, f"{name}: {entry.splitlines()[0]} has no hash"


def test_the_known_bad_combinations_stay_out():
    lock = locked()
    # prefect 3.8.8's server scheduler fails on SQLAlchemy 2.1; from fastapi 0.151 on its server
    # answers the client's `"limit": null` with a 422 (tests/services checks `prefect deployment ls`)
    assert lock["prefect"] == "3.8.8"
    assert lock["sqlalchemy"].startswith("2.0.")
    assert int(lock["fastapi"].split(".")[1]) < 151
    assert lock["torch"].split("+")[0] == "2.13.0"


@pytest.mark.parametrize("lock_file", LOCKS)
def test_the_installed_versions_are_the_locked_ones(lock_file):
    drift = {}
    for name, version in pins(lock_file).items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            installed = None
        if installed != version:
            drift[name] = (version, installed)
    assert not drift, f"{lock_file}: (locked, installed) differ; rerun `make install`: {drift}"

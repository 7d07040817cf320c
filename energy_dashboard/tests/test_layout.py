"""The project package's layout is enforced, not only described: every child of
`energy_dashboard` is either the shared core or named in the wiring layer of the import-linter
contract, so a new file cannot slip between the layers unchecked."""

from __future__ import annotations

import tomllib
from pathlib import Path

import energy_dashboard

PACKAGE = Path(energy_dashboard.__file__).parent
CONTRACT = "the project's core is below the modules, its wiring above them"


def _children() -> set[str]:
    names = set()
    for path in PACKAGE.iterdir():
        if path.name.startswith(("_", ".")):
            continue
        if path.suffix == ".py":
            names.add(path.stem)
        elif path.is_dir() and (path / "__init__.py").exists():
            names.add(path.name)
    return names


def _layers() -> list[list[str]]:
    config = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())
    (contract,) = [c for c in config["tool"]["importlinter"]["contracts"] if c["name"] == CONTRACT]
    return [[m.strip() for m in layer.replace("|", ":").split(":")] for layer in contract["layers"]]


def test_every_child_of_the_project_package_is_in_a_layer() -> None:
    layers = _layers()
    assert layers[-1] == ["energy_dashboard.core"]
    wiring = {name.removeprefix("energy_dashboard.") for name in layers[0]}
    assert _children() - {"core"} == wiring


def test_the_modules_sit_between_the_core_and_the_wiring() -> None:
    assert _layers()[1:] == [["demand_response", "ingestion"], ["sensors"], ["energy_dashboard.core"]]

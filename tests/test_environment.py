"""pyproject.toml and environment.yml must pin the same versions (conda and pip users get one study)."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def pins_in_pyproject() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = project["dependencies"] + [s for extra in project["optional-dependencies"].values() for s in extra]
    return dict(spec.split("==") for spec in specs)


def pins_in_environment_yml() -> dict[str, str]:
    return dict(
        re.findall(r"^\s+- ([A-Za-z0-9_.\[\]-]+)==(\S+)$", (ROOT / "environment.yml").read_text(), re.MULTILINE)
    )


def test_every_dependency_is_pinned_exactly():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for spec in project["dependencies"]:
        assert "==" in spec, f"{spec} is not pinned"
    assert pins_in_pyproject()["torch"] == "2.13.0"


def test_conda_and_pip_pins_agree():
    assert pins_in_environment_yml() == pins_in_pyproject()

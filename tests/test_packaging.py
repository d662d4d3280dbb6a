"""The package metadata: pyproject.toml, requirements.txt and the constraints.txt lock agree."""

import tomllib
from pathlib import Path

from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[1]


def _lines(path: Path) -> list[str]:
    return [ln.split("#")[0].strip() for ln in path.read_text().splitlines() if ln.split("#")[0].strip()]


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_requirements_txt_is_the_dependencies_plus_every_extra():
    project = _pyproject()["project"]
    declared = list(project["dependencies"]) + [r for extra in project["optional-dependencies"].values() for r in extra]
    assert sorted(map(str, map(Requirement, _lines(REPO / "requirements.txt")))) == \
        sorted(map(str, map(Requirement, declared)))


def test_the_lock_pins_every_requirement_within_its_bounds():
    pins = {}
    for line in _lines(REPO / "constraints.txt"):
        req = Requirement(line)
        (spec,) = req.specifier
        assert spec.operator == "==", line
        pins[req.name.lower().replace("_", "-")] = spec.version
    assert pins["torch"] == "2.13.0"
    for line in _lines(REPO / "requirements.txt"):
        req = Requirement(line)
        name = req.name.lower().replace("_", "-")
        assert name in pins, f"{name} is not in constraints.txt"
        assert req.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} is outside {req.specifier}"


def test_package_data_and_entry_point():
    cfg = _pyproject()
    assert cfg["project"]["scripts"]["skyfall"] == "skyfall_core.cli:main"
    data = cfg["tool"]["setuptools"]["package-data"]
    for package, patterns in data.items():
        folder = REPO.joinpath(*package.split("."))
        for pattern in patterns:
            assert list(folder.glob(pattern)), f"{package}: {pattern} matches no file"
    covered = {f for package, patterns in data.items() for pattern in patterns
               for f in REPO.joinpath(*package.split(".")).glob(pattern)}
    for path in (REPO / "skyfall_core").rglob("*"):  # every non-Python file the package holds ships with it
        if path.is_file() and path.suffix not in (".py", ".pyc") and "__pycache__" not in path.parts:
            assert path in covered, f"{path.relative_to(REPO)} is not in [tool.setuptools.package-data]"

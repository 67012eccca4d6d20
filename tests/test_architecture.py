"""docs/architecture.md is the map of the code: it names every module, so a new one cannot land
without a line saying what it is for."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAP = (ROOT / "docs" / "architecture.md").read_text()
MODULES = sorted(
    path.relative_to(ROOT)
    for package in ("pimsync", "dashboard", "standins", "bench", "drills")
    for path in (ROOT / package).rglob("*.py")
    # Migrations and commands are listed by folder; a package's __init__ by its folder's line.
    if "migrations" not in path.parts and "management" not in path.parts and path.name != "__init__.py"
)


@pytest.mark.parametrize("module", MODULES, ids=str)
def test_the_architecture_page_names_every_module(module):
    assert f"`{module.name}`" in MAP or f"{module.name}`" in MAP or str(module) in MAP, (
        f"{module} is not on docs/architecture.md: add a line saying what it is for"
    )

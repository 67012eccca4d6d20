"""The documentation stays true: every variable pimsync reads is in docs/configuration.md's table,
every relative link in README.md and docs/ leads somewhere, and the README stays an on-ramp."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]

# How pimsync reads the environment: settings.py's typed helpers, and os.environ where a module
# (or deploy/gunicorn.conf.py) reads a variable of its own.
READS = re.compile(
    r"""\benv_(?:str|bool|int|float|list|time_zone)\(\s*["']([A-Z][A-Z0-9_]*)["']"""
    r"""|\bos\.environ(?:\.get\(|\[)\s*["']([A-Z][A-Z0-9_]*)["']"""
)
# Read by Django itself or set for the process, not settings an operator chooses.
NOT_SETTINGS = {"DJANGO_SETTINGS_MODULE"}


def variables_read() -> dict[str, str]:
    """Every environment variable the code reads, and the first file that reads it."""
    sources = [*sorted((ROOT / "pimsync").rglob("*.py")), *sorted((ROOT / "dashboard").rglob("*.py"))]
    sources.append(ROOT / "deploy" / "gunicorn.conf.py")
    found: dict[str, str] = {}
    for path in sources:
        if "migrations" in path.parts:
            continue
        for match in READS.finditer(path.read_text()):
            name = match.group(1) or match.group(2)
            if name not in NOT_SETTINGS:
                found.setdefault(name, str(path.relative_to(ROOT)))
    return found


def configuration_table() -> str:
    """The rows of the one table in docs/configuration.md."""
    text = (ROOT / "docs" / "configuration.md").read_text()
    return "\n".join(line for line in text.splitlines() if line.startswith("|"))


def test_the_settings_helpers_are_what_the_search_looks_for():
    # A new helper in settings.py would hide its variables from the test below.
    settings = (ROOT / "pimsync" / "settings.py").read_text()
    helpers = set(re.findall(r"^def (env_\w+)\(", settings, flags=re.M))
    assert helpers == {"env_str", "env_bool", "env_int", "env_float", "env_list", "env_time_zone"}


def test_every_variable_pimsync_reads_is_in_the_configuration_table():
    read = variables_read()
    assert {"DATABASE_URL", "ADOBE_CLIENT_ID", "PIMSYNC_BIND", "PIMSYNC_ADMIN_PASSWORD"} <= set(read)
    table = configuration_table()
    missing = {name: where for name, where in read.items() if f"`{name}`" not in table}
    assert not missing, f"read but not in docs/configuration.md's table: {missing}"


def slug(heading: str) -> str:
    """The anchor GitHub gives a heading."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", lambda m: m.group(1) or "", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    result = set()
    in_code = False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if in_code or not line.startswith("#"):
            continue
        base = slug(line.lstrip("#"))
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def links(path: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)  # code blocks hold no links
    text = re.sub(r"`[^`\n]*`", "", text)
    return re.findall(r"\]\(([^)\s]+)\)", text)


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(document):
    broken = []
    for target in links(document):
        if re.match(r"[a-z]+:", target):  # https:, mailto:: not ours to check here
            continue
        file_part, _, anchor = target.partition("#")
        linked = (document.parent / unquote(file_part)).resolve() if file_part else document
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target}: no heading with that anchor in {linked.name}")
    assert not broken, broken


def test_the_readme_is_a_short_on_ramp():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) < 200
    assert "make run" in readme and "make test" in readme
    for guide in ("deployment.md", "configuration.md", "operations.md", "user-guide.md"):
        assert f"docs/{guide}" in readme


def test_the_readme_shows_screenshots_that_exist():
    shown = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", (ROOT / "README.md").read_text())
    assert shown and all((ROOT / path).exists() for path in shown)

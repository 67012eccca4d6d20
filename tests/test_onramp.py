"""The on-ramp's edges: what `make` says about the Python it is given, and `manage.py version`."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from django.core.management import call_command

ROOT = Path(__file__).resolve().parent.parent


def fake_python(tmp_path: Path, *, version: str, has_venv: bool) -> Path:
    """An interpreter that answers `make`'s questions as an old or venv-less python3 would."""
    script = tmp_path / "python3"
    major, minor, _ = (int(part) for part in version.split("."))
    script.write_text(
        "#!/bin/sh\n"
        'case "$2" in\n'
        f"  *version_info*) exit {0 if (major, minor) >= (3, 11) else 1};;\n"
        f"  *python_version*) echo {version}; exit 0;;\n"
        f"  *ensurepip*) exit {0 if has_venv else 1};;\n"
        "esac\n"
        "echo 'make went on to use this interpreter' >&2; exit 3\n"
    )
    script.chmod(0o755)
    return script


def make_test(tmp_path: Path, python: str) -> subprocess.CompletedProcess:
    """`make test` in a fresh copy of the Makefile (no virtualenv yet), with this PYTHON."""
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    for name in ("Makefile", "requirements.txt", "requirements-dev.txt"):
        shutil.copy(ROOT / name, checkout / name)
    return subprocess.run(
        ["make", "test", f"PYTHON={python}"], cwd=checkout, capture_output=True, text=True, timeout=60
    )


@pytest.mark.skipif(not shutil.which("make"), reason="make is not installed")
class TestMakeRefusesAnUnfitPython:
    def test_an_old_python_is_refused_by_version_before_anything_is_installed(self, tmp_path):
        result = make_test(tmp_path, str(fake_python(tmp_path, version="3.9.2", has_venv=True)))
        assert result.returncode != 0
        assert "pimsync needs Python 3.11 or newer" in result.stdout and "is 3.9.2" in result.stdout
        assert "make went on" not in result.stderr
        assert not (tmp_path / "checkout" / ".venv").exists()

    def test_a_python_without_venv_is_told_to_install_python3_venv(self, tmp_path):
        result = make_test(tmp_path, str(fake_python(tmp_path, version="3.11.2", has_venv=False)))
        assert result.returncode != 0
        assert "apt-get install python3-venv" in result.stdout
        assert "make went on" not in result.stderr

    def test_a_missing_python_is_named(self, tmp_path):
        result = make_test(tmp_path, str(tmp_path / "no-such-python3"))
        assert result.returncode != 0
        assert "is not installed" in result.stdout


def test_version_prints_the_released_version():
    out = io.StringIO()
    call_command("version", stdout=out)
    version = re.fullmatch(r"pimsync (\d+\.\d+\.\d+)\n", out.getvalue())
    assert version, out.getvalue()
    assert f"## {version.group(1)}" in (ROOT / "CHANGELOG.md").read_text()

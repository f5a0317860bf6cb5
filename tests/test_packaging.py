"""The package metadata: current setuptools forms, and only files that exist."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_license_is_an_spdx_expression_with_a_setuptools_that_reads_it() -> None:
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    [setuptools] = [r for r in PYPROJECT["build-system"]["requires"] if r.startswith("setuptools")]
    match = re.fullmatch(r"setuptools>=(\d+)", setuptools)
    assert match is not None
    assert int(match[1]) >= 77  # the first release that reads an SPDX string


def test_every_package_data_pattern_matches_a_file() -> None:
    for package, patterns in PYPROJECT["tool"]["setuptools"]["package-data"].items():
        folder = ROOT / package.replace(".", "/")
        assert [p for p in patterns if not list(folder.glob(p))] == []


def test_make_demo_passes_the_port_on() -> None:
    dry_run = subprocess.run(
        ["make", "-n", "demo", "PORT=8090"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert ".venv/bin/xero-gateway demo --port 8090" in dry_run.stdout.splitlines()

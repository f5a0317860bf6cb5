"""The README documents what users rely on: every policy field as declared, every CLI command."""

from __future__ import annotations

import argparse
from pathlib import Path

from gateway.cli.main import build_parser
from gateway.policy import FIELDS

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def test_readme_documents_every_policy_field_as_declared() -> None:
    rows = [f"| `{f.path}` | {f.description} |" for f in FIELDS]
    missing = [row for row in rows if row not in README.splitlines()]
    assert missing == []


def test_readme_documents_every_command() -> None:
    def commands(parser: argparse.ArgumentParser, prefix: str) -> list[str]:
        found = []
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    nested = commands(sub, f"{prefix} {name}")
                    found.extend(nested or [f"{prefix} {name}"])
        return found

    missing = [c for c in commands(build_parser(), "xero-gateway") if f"`{c}" not in README]
    assert missing == []

"""The README documents what users rely on: every policy field and every CLI command."""

from __future__ import annotations

import argparse
from pathlib import Path

from gateway.cli.main import build_parser
from gateway.enforcement.policy_files import load_policy_path
from gateway.policy import policy_to_document

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def leaf_paths(document: dict[str, object], prefix: str = "") -> list[str]:
    paths = []
    for key, value in document.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            paths.extend(leaf_paths(value, f"{path}."))
        else:
            paths.append(path)
    return paths


def test_readme_documents_every_policy_field() -> None:
    (policy,) = load_policy_path(ROOT / "policies")
    document = policy_to_document(policy)
    document.setdefault("prompt", {}).setdefault("max_dismissals", 5)
    missing = [p for p in leaf_paths(document) if f"| `{p}` |" not in README]
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

"""The gateway's one family of errors; each message says what was wrong and what to do."""

from __future__ import annotations


class GatewayError(Exception):
    """Base of every error the gateway raises on purpose."""


class ConfigError(GatewayError):
    """The configuration is invalid; ``problems`` holds one line per bad key."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class StoreError(GatewayError):
    """The state store could not do what was asked."""


class NotFoundError(StoreError):
    """A named record does not exist."""


class ConflictError(StoreError):
    """A record with the same identity already exists."""


class StoreBusyError(StoreError):
    """The database stayed locked by another connection for longer than the store waits."""


class ImportRowError(GatewayError):
    """A row of an onboarding CSV file is invalid."""


class UsageError(GatewayError):
    """A command asked for something that cannot be done as asked."""


class SealError(GatewayError):
    """A value sealed at rest cannot be opened: altered, misplaced, or its key is gone."""

"""The database seam: what the repositories ask of a database, whatever the driver behind it.

Statements are portable SQL with named parameters in the ``:name`` style; rows come back as
plain mappings from column name to value. Errors are the gateway's own: a unique violation
is a :class:`~gateway.errors.ConflictError`, a lock held too long by another connection a
:class:`~gateway.errors.StoreBusyError`, anything else a :class:`~gateway.errors.StoreError`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from types import MappingProxyType
from typing import Any, Protocol

Row = Mapping[str, Any]
"""One result row: column name (or ``AS`` alias) to value."""

Params = Mapping[str, Any]
"""Named parameters: ``{"id": ...}`` for ``:id`` in the statement."""

NO_PARAMS: Params = MappingProxyType({})

LIKE_ESCAPE = "ESCAPE '\\'"
"""The escape clause that goes with :func:`contains_pattern` (the same in SQLite and PostgreSQL)."""


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def ascii_lower(text: str) -> str:
    """``text`` with ASCII letters lower-cased and nothing else changed: what SQLite's
    ``lower`` does, so a pattern made with it matches ``lower(column)`` as typed."""
    return text.translate(_ASCII_LOWER)


def contains_pattern(text: str) -> str:
    """A LIKE pattern matching values that contain ``text`` as typed: its ``%``, ``_`` and
    backslashes are escaped (use with LIKE_ESCAPE)."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def in_list(values: Sequence[str]) -> tuple[str, dict[str, str]]:
    """For ``column IN (...)``: the placeholders (``:v0, :v1, ...``, names only, never
    values) and their parameters. ``values`` must not be empty."""
    params = {f"v{i}": value for i, value in enumerate(values)}
    return ", ".join(f":{name}" for name in params), params


class Transaction(Protocol):
    """One open write transaction; every statement in it commits or rolls back together."""

    async def execute(self, sql: str, params: Params = NO_PARAMS) -> int:
        """Run one statement; return how many rows it changed."""
        ...

    async def execute_many(self, sql: str, params: Iterable[Params]) -> None:
        """Run one statement once for each set of parameters."""
        ...

    async def execute_script(self, sql: str) -> None:
        """Run several statements separated by semicolons (a migration's DDL)."""
        ...

    async def fetch_one(self, sql: str, params: Params = NO_PARAMS) -> Row | None:
        """Run one statement and return its first row (or None); also for ``RETURNING``."""
        ...

    async def fetch_all(self, sql: str, params: Params = NO_PARAMS) -> list[Row]:
        """Run one statement and return every row."""
        ...


class Database(Protocol):
    """A database the store's repositories can use.

    Writes go through :meth:`transaction`: it commits when the block ends and rolls back when
    an exception leaves it (the exception is raised on). Transactions do not nest. Reads
    outside a transaction see committed data only; a read made by the code holding a
    transaction sees that transaction's writes.
    """

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """Open a write transaction, waiting for other writers first."""
        ...

    async def fetch_one(self, sql: str, params: Params = NO_PARAMS) -> Row | None:
        """Read one row (or None)."""
        ...

    async def fetch_all(self, sql: str, params: Params = NO_PARAMS) -> list[Row]:
        """Read every row."""
        ...

    @property
    def statement_count(self) -> int:
        """How many statements this database handle has run since it was opened."""
        ...

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        ...

    async def check(self) -> None:
        """A cheap health query; StoreError if the database cannot answer."""
        ...

    async def schema_version(self) -> int:
        """The highest migration applied to this database."""
        ...

    async def close(self) -> None:
        """Finish the current job and let go of the database; safe to repeat."""
        ...

"""Columns that hold values sealed at rest, and re-sealing them all with the current key.

Every module that keeps a sealed value registers its column here (table, id column, sealed
column, and how the value's associated data is made from its row), so ``xero-gateway
rotate-key`` finds them all. Sealed values are kept as base64 text, which every database
stores alike.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from gateway.errors import StoreError
from gateway.store.database import Database, Row

_NAME = re.compile(r"[a-z_][a-z0-9_]*")
BATCH = 200  # rows re-sealed per transaction


class Resealer(Protocol):
    """What re-sealing needs of the sealer (``Keys.at_rest``)."""

    def seal(self, plaintext: bytes, aad: bytes) -> bytes: ...

    def open(self, blob: bytes, aad: bytes) -> bytes: ...

    def is_current(self, blob: bytes) -> bool: ...


@dataclass(frozen=True, kw_only=True)
class SealedColumn:
    """A column holding sealed values (base64 text), the column naming its row, and the
    associated data each value was sealed with, computed from the whole row."""

    table: str
    id_column: str
    column: str
    aad: Callable[[Row], bytes]

    def __post_init__(self) -> None:
        names = (self.table, self.id_column, self.column)
        if any(_NAME.fullmatch(name) is None for name in names):
            raise ValueError(f"a sealed column is named by plain SQL identifiers: {names}")

    @property
    def name(self) -> str:
        return f"{self.table}.{self.column}"


_REGISTRY: dict[str, SealedColumn] = {}


def register_sealed_column(column: SealedColumn) -> SealedColumn:
    """Add a column to those ``rotate-key`` re-seals (registering the same one twice is fine)."""
    known = _REGISTRY.get(column.name)
    if known is not None and known != column:
        raise ValueError(f"{column.name} is registered as a sealed column already")
    _REGISTRY[column.name] = column
    return column


def sealed_columns() -> tuple[SealedColumn, ...]:
    """Every registered sealed column, in registration order."""
    return tuple(_REGISTRY.values())


def sealed_text(blob: bytes) -> str:
    """A sealed value as the column keeps it."""
    return base64.b64encode(blob).decode("ascii")


def sealed_bytes(text: str) -> bytes:
    """A sealed value as the column keeps it, back as the sealer's bytes."""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise StoreError("a sealed value in the store is not base64 text") from None


@dataclass(frozen=True, kw_only=True)
class RotationCount:
    """What re-sealing one column did."""

    column: str
    resealed: int  # sealed with a previous key, now with the current one
    current: int  # already sealed with the current key: untouched


async def reseal_column(
    db: Database, sealer: Resealer, column: SealedColumn, *, batch: int = BATCH
) -> RotationCount:
    """Re-seal with the current key every value of ``column`` that a previous key sealed.

    Rows are taken ``batch`` at a time in id order, each batch in one transaction; a value
    that changed meanwhile is left as the other writer left it (the update names the old
    value). A value that does not open raises the sealer's error, after the batches before
    it were committed; running it again carries on where it stopped.
    """
    t, i, c = column.table, column.id_column, column.column
    select = (
        f"SELECT * FROM {t} WHERE {i} > :after AND {c} IS NOT NULL"  # noqa: S608
        f" ORDER BY {i} LIMIT :batch"
    )
    update = f"UPDATE {t} SET {c} = :new WHERE {i} = :id AND {c} = :old"  # noqa: S608
    resealed = current = 0
    after: object = ""
    while True:
        async with db.transaction() as tx:
            rows = await tx.fetch_all(select, {"after": after, "batch": batch})
            for row in rows:
                blob = sealed_bytes(row[c])
                if sealer.is_current(blob):
                    current += 1
                    continue
                aad = column.aad(row)
                fresh = sealer.seal(sealer.open(blob, aad), aad)
                params = {"new": sealed_text(fresh), "id": row[i], "old": row[c]}
                resealed += await tx.execute(update, params)
        if len(rows) < batch:
            return RotationCount(column=column.name, resealed=resealed, current=current)
        after = rows[-1][i]


async def reseal_all(db: Database, sealer: Resealer) -> list[RotationCount]:
    """Re-seal every registered column (see :func:`reseal_column`)."""
    return [await reseal_column(db, sealer, column) for column in sealed_columns()]

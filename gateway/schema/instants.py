"""Instants as the APIs write them: ISO 8601 date-times with their offset."""

from __future__ import annotations

from typing import Annotated

from pydantic import WithJsonSchema

# Written by the handler (datetime.isoformat(): "+00:00", never "Z"), so kept as the string.
Instant = Annotated[str, WithJsonSchema({"type": "string", "format": "date-time"})]

"""RFC 9457 problem details, the body of every error the gateway's APIs answer with."""

from __future__ import annotations

from pydantic import BaseModel, Field


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = Field(examples=["/_gateway/problems/policy-invalid"])
    title: str
    status: int
    detail: str
    errors: list[str] | None = Field(default=None, description="Every problem found (422).")
    current_version: int | None = Field(default=None, description="On 412.")
    request_id: str | None = None

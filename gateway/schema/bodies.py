"""Request bodies checked against their models, every problem named by its path at once.

The messages are the house's (``name: missing (it is required)``, ``extra: unknown key``), as
the policy parser and the CLI phrase them, so that an API caller reads one kind of list.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

from gateway.errors import GatewayError

Model = TypeVar("Model", bound=BaseModel)

# pydantic's error types, in the words the policy parser uses for the same mistakes.
_PHRASES = {
    "missing": "missing (it is required)",
    "extra_forbidden": "unknown key",
    "string_type": "must be a string",
    "bool_type": "must be true or false",
    "int_type": "must be a whole number",
    "list_type": "must be a list",
    "model_type": "must be an object",
    "model_attributes_type": "must be an object",
    "dict_type": "must be an object",
}


class BodyError(GatewayError):
    """A request body does not fit its model; ``problems`` holds one ``path: message`` each."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


def refusal(message: str) -> PydanticCustomError:
    """What a model's own check raises: its message is shown as it is, after the field."""
    return PydanticCustomError("refused", message)


def _path(location: Sequence[int | str]) -> str:
    return ".".join(str(part) for part in location) or "body"


def _line(error: ErrorDetails) -> str:
    message = _PHRASES.get(error["type"], error["msg"])
    return f"{_path(error['loc'])}: {message}"


def problems_of(error: ValidationError) -> list[str]:
    """Every problem pydantic found, as ``path: message`` lines in the order of the fields."""
    return [_line(e) for e in error.errors(include_url=False, include_context=False)]


def validate(model: type[Model], data: Mapping[str, Any]) -> Model:
    """``data`` (a decoded JSON object) as ``model``, strictly; BodyError listing every problem.

    Strict: JSON has no "1" for 1 or "true" for true, so neither is taken for the other.
    """
    try:
        return model.model_validate(data, strict=True)
    except ValidationError as exc:
        raise BodyError(problems_of(exc)) from None

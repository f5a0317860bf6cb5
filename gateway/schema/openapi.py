"""An OpenAPI 3.1 document from a route table and the models of its bodies.

Each API declares its operations (method, path, parameters, body model, replies with their
models) next to its routes; :func:`build_document` turns them and the shared components into
the document, with every model's JSON Schema (draft 2020-12, as OpenAPI 3.1 takes it) made by
pydantic under ``components.schemas``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import (
    GenerateJsonSchema,
    JsonSchemaMode,
    JsonSchemaValue,
    models_json_schema,
)
from pydantic_core import CoreSchema
from pydantic_core.core_schema import WithDefaultSchema

from gateway.schema.problem import Problem

JSON = "application/json"
PROBLEM = "application/problem+json"
REF = "#/components/{kind}/{name}"
SCHEMA_REF = REF.format(kind="schemas", name="{model}")

STRING: Mapping[str, Any] = {"type": "string"}
INTEGER: Mapping[str, Any] = {"type": "integer"}
DATE_TIME: Mapping[str, Any] = {"type": "string", "format": "date-time"}


def ref(kind: str, name: str) -> dict[str, str]:
    """A reference to a shared component: ``ref("responses", "NotFound")``."""
    return {"$ref": REF.format(kind=kind, name=name)}


@dataclass(frozen=True, kw_only=True)
class Param:
    """A parameter of one operation (shared ones are named by a string instead)."""

    name: str
    where: Literal["path", "query", "header"]
    description: str
    schema: Mapping[str, Any] = field(default_factory=lambda: dict(STRING))
    required: bool = False

    def document(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "in": self.where,
            "required": self.required or self.where == "path",
            "description": self.description,
            "schema": dict(self.schema),
        }


@dataclass(frozen=True, kw_only=True)
class Reply:
    """A response: ``model`` is its JSON body; ``headers`` name shared header components."""

    description: str
    model: type[BaseModel] | None = None
    headers: tuple[str, ...] = ()
    media_type: str = JSON

    def document(self) -> dict[str, Any]:
        content: dict[str, Any] = {}
        if self.model is not None:
            content["schema"] = ref("schemas", self.model.__name__)
        response: dict[str, Any] = {
            "description": self.description,
            "content": {self.media_type: content},
        }
        if self.headers:
            response["headers"] = {name: ref("headers", name) for name in self.headers}
        return response


@dataclass(frozen=True, kw_only=True)
class Operation:
    """One route as the document describes it.

    ``replies`` maps a status to a Reply, or to the name of a shared response (the problem
    documents); ``parameters`` holds Params, or names of shared parameters; ``scopes`` are the
    token scopes any one of which admits a call (None: no authentication).
    """

    method: str
    path: str
    operation_id: str
    summary: str
    tag: str
    replies: Mapping[str, Reply | str]
    parameters: tuple[Param | str, ...] = ()
    body: type[BaseModel] | None = None
    description: str | None = None
    scopes: tuple[str, ...] | None = None

    def models(self) -> Iterable[tuple[type[BaseModel], JsonSchemaMode]]:
        if self.body is not None:
            yield self.body, "validation"
        for reply in self.replies.values():
            if isinstance(reply, Reply) and reply.model is not None:
                yield reply.model, "serialization"


@dataclass(frozen=True, kw_only=True)
class Security:
    """How scoped operations authenticate: a scheme, and the replies when that fails."""

    scheme: str
    definition: Mapping[str, Any]
    always: tuple[str, ...] = ()  # scopes that admit every operation besides its own
    failures: Mapping[str, str] = field(default_factory=dict)  # status → shared response


@dataclass(frozen=True, kw_only=True)
class Components:
    """The shared parts that operations name: responses, parameters and headers."""

    responses: Mapping[str, Reply]
    parameters: Mapping[str, Param]
    headers: Mapping[str, Mapping[str, Any]]


class _Generator(GenerateJsonSchema):
    """pydantic's JSON Schema, in the house's terms.

    No title on every property (the name says it). A field that defaults to None is one a
    handler leaves out when it has nothing to say (the answers are written without unset
    fields), never written as null: its schema is that of the value alone. A field that may
    really be null is declared ``X | None`` without a default.
    """

    def field_title_should_be_set(self, schema: CoreSchema) -> bool:
        return False

    def default_schema(self, schema: WithDefaultSchema) -> JsonSchemaValue:
        found = super().default_schema(schema)
        if "default" not in schema or schema["default"] is not None:
            return found
        found.pop("default", None)
        branches = [b for b in found.pop("anyOf", []) if b != {"type": "null"}]
        if len(branches) == 1:
            found.update(branches[0])
        elif branches:
            found["anyOf"] = branches
        return found


def schemas(models: Iterable[tuple[type[BaseModel], JsonSchemaMode]]) -> dict[str, Any]:
    """The JSON Schemas of ``models`` and of every model they use, by name."""
    unique = list(dict.fromkeys(models))
    _, top = models_json_schema(unique, ref_template=SCHEMA_REF, schema_generator=_Generator)
    found: dict[str, Any] = top.get("$defs", {})
    return dict(sorted(found.items()))


def _operation(operation: Operation, security: Security) -> dict[str, Any]:
    described: dict[str, Any] = {
        "operationId": operation.operation_id,
        "summary": operation.summary,
        "tags": [operation.tag],
    }
    if operation.description:
        described["description"] = operation.description
    if operation.parameters:
        described["parameters"] = [
            ref("parameters", p) if isinstance(p, str) else p.document()
            for p in operation.parameters
        ]
    if operation.body is not None:
        described["requestBody"] = {
            "required": True,
            "content": {JSON: {"schema": ref("schemas", operation.body.__name__)}},
        }
    responses = {
        status: ref("responses", reply) if isinstance(reply, str) else reply.document()
        for status, reply in operation.replies.items()
    }
    if operation.scopes is not None:
        # One requirement per scope: any one of them is enough.
        scopes = [*operation.scopes, *security.always]
        described["security"] = [{security.scheme: [scope]} for scope in scopes]
        responses.update({s: ref("responses", name) for s, name in security.failures.items()})
    described["responses"] = responses
    return described


def build_document(
    *,
    info: Mapping[str, Any],
    tags: Sequence[str],
    operations: Sequence[Operation],
    components: Components,
    security: Security,
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``operations``."""
    paths: dict[str, dict[str, Any]] = {}
    for operation in operations:
        paths.setdefault(operation.path, {})[operation.method.lower()] = _operation(
            operation, security
        )
    problem: tuple[type[BaseModel], JsonSchemaMode] = (Problem, "serialization")
    models = [problem, *(m for op in operations for m in op.models())]
    return {
        "openapi": "3.1.0",
        "info": dict(info),
        "tags": [{"name": name} for name in tags],
        "paths": paths,
        "components": {
            "securitySchemes": {security.scheme: dict(security.definition)},
            "schemas": schemas(models),
            "responses": {name: r.document() for name, r in components.responses.items()},
            "parameters": {name: p.document() for name, p in components.parameters.items()},
            "headers": {name: dict(h) for name, h in components.headers.items()},
        },
    }

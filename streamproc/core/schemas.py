"""The JSON Schemas in ``schemas/``, loaded once into one registry so ``$ref``s resolve.

The same files are the public contract for consumers outside Python; the edge and tests
validate against exactly these, so code and documentation cannot drift apart.

Validation runs twice as fast as it needs to be readable: a fastjsonschema-compiled
validator (~3 µs) decides, and only a document it refuses goes through ``jsonschema``
(~90 µs) to name the most relevant violation.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastjsonschema
import orjson
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry, Resource

BASE_URI = "https://streamproc.dev/schemas/"
DRAFT_7 = "http://json-schema.org/draft-07/schema#"


def schema_dir() -> Path:
    """``schemas/`` of a source checkout, or the copy a wheel carries as ``_schemas``."""
    package = Path(__file__).resolve().parent.parent  # streamproc/
    for candidate in (package / "_schemas", package.parent / "schemas"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"no schemas directory next to {package}")


@functools.cache
def registry() -> Registry:
    resources = []
    for path in sorted(schema_dir().rglob("*.json")):
        contents = orjson.loads(path.read_bytes())
        if "$id" in contents:
            resources.append((contents["$id"], Resource.from_contents(contents)))
    return Registry().with_resources(resources)


@functools.cache
def validator(name: str) -> Draft202012Validator:
    """A validator for ``schemas/<name>`` (e.g. ``raw/daily/recording.started.json``)."""
    schema = registry().contents(BASE_URI + name)
    return Draft202012Validator(schema, registry=registry())


@functools.cache
def fast_validator(name: str) -> Callable[[Any], Any]:
    """A compiled validator; our schemas use only keywords that mean the same in draft 7."""
    schema = {**registry().contents(BASE_URI + name), "$schema": DRAFT_7}
    return fastjsonschema.compile(schema, handlers={"https": _resolve})


def _resolve(uri: str) -> Any:
    return registry().contents(uri)


def first_error(name: str, document: Any) -> str | None:
    """A one-line description of the most relevant violation, or None when valid."""
    try:
        fast_validator(name)(document)
    except fastjsonschema.JsonSchemaValueException:
        pass
    else:
        return None
    error: ValidationError | None = best_match(validator(name).iter_errors(document))
    if error is None:
        return f"(top level): refused by the schema {name}"
    where = error.json_path.removeprefix("$.") if error.path else "(top level)"
    return f"{where}: {error.message}"

"""JSON encoding of journaled values, typed restoration and hashing.

Values are stored as JSON text. Dataclasses, pydantic models, enums, UUIDs and
datetimes are encoded; anything else fails with a :class:`SerializationError`
naming what was being stored and the offending type. On the way back, a value
is restored to the annotated return type of the step that produced it, so a
step annotated ``-> Report`` returns a ``Report`` on replay too.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import typing
from typing import Any

import orjson

from kernos.errors import SerializationError
from kernos.types import JSON

__all__ = ["args_hash", "checksum", "decode", "encode", "restore", "to_json"]

_PLAIN = frozenset({str, int, float, bool, type(None), dict, list, typing.Any})


class _Unencodable(TypeError):
    def __init__(self, type_name: str) -> None:
        super().__init__(type_name)
        self.type_name = type_name


def _default(value: Any) -> Any:
    model_dump = getattr(value, "model_dump", None)
    if callable(model_dump):  # a pydantic model
        return model_dump(mode="json")
    raise _Unencodable(f"{type(value).__module__}.{type(value).__qualname__}")


def encode(value: Any, *, what: str) -> str:
    """Encode ``value`` as JSON text.

    Args:
        value: the value to store.
        what: a description of it for the error, e.g. ``"result of step 'fetch'"``.

    Raises:
        SerializationError: the value (or something inside it) is not JSON-encodable.
    """
    try:
        return orjson.dumps(value, default=_default).decode()
    except TypeError as exc:  # orjson chains what ``default`` raised as the cause
        cause = exc.__cause__
        if isinstance(cause, _Unencodable):
            raise SerializationError(
                f"cannot store the {what}: a {cause.type_name} is not JSON-serializable; "
                "return JSON types, a dataclass or a pydantic model instead",
                what=what,
                type_name=cause.type_name,
            ) from exc
        raise SerializationError(  # non-str dict keys, integers beyond 64 bits, ...
            f"cannot store the {what}: {exc}", what=what, type_name=type(value).__qualname__
        ) from exc


def to_json(value: Any, *, what: str) -> JSON:
    """Return the plain-JSON form of ``value`` (dataclasses and models become dicts)."""
    if value is None or type(value) in (str, int, float, bool):
        return typing.cast(JSON, value)
    return typing.cast(JSON, orjson.loads(encode(value, what=what)))


def decode(text: str | bytes | None) -> JSON:
    """Parse stored JSON text; ``None`` stays ``None``."""
    if text is None:
        return None
    return typing.cast(JSON, orjson.loads(text))


def restore(value: JSON, annotation: Any) -> Any:
    """Turn a decoded JSON value back into ``annotation``'s type where that is not plain JSON."""
    if annotation in _PLAIN or value is None or annotation is None:
        return value
    origin = typing.get_origin(annotation)
    if origin in (dict, list) and not _has_rich_args(annotation):
        return value
    return _adapter(annotation)(value)


def _has_rich_args(annotation: Any) -> bool:
    return any(
        arg not in _PLAIN and (typing.get_origin(arg) is None or _has_rich_args(arg))
        for arg in typing.get_args(annotation)
    )


@functools.lru_cache(maxsize=512)
def _adapter(annotation: Any) -> Any:
    try:
        from pydantic import TypeAdapter
    except ImportError:  # pragma: no cover - exercised only without the pydantic extra
        if dataclasses.is_dataclass(annotation) and isinstance(annotation, type):
            cls = annotation
            return lambda value: cls(**value)
        return lambda value: value
    return TypeAdapter(annotation).validate_python


def args_hash(args: tuple[Any, ...], kwargs: dict[str, Any], *, what: str) -> str:
    """A short, stable hash of call arguments, used to detect divergence on recovery."""
    if not args and not kwargs:
        return _EMPTY_ARGS_HASH
    text = encode([args, kwargs] if kwargs else args, what=f"arguments of {what}")
    return hashlib.sha256(text.encode()).hexdigest()[:16]


_EMPTY_ARGS_HASH = hashlib.sha256(b"[]").hexdigest()[:16]


def checksum(text: str) -> str:
    """The SHA-256 hex digest of stored JSON text."""
    return hashlib.sha256(text.encode()).hexdigest()

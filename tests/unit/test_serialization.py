from __future__ import annotations

import dataclasses
import pickle

import pydantic
import pytest

from kernos import errors
from kernos.serialization import args_hash, checksum, decode, encode, restore


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Model(pydantic.BaseModel):
    name: str
    points: list[Point]


def test_plain_values_round_trip() -> None:
    value = {"a": [1, 2.5, "x", None, True], "b": {"c": "d"}}
    assert decode(encode(value, what="v")) == value


def test_dataclass_and_model_restore_to_their_types() -> None:
    model = Model(name="m", points=[Point(1, 2)])
    assert restore(decode(encode(Point(1, 2), what="p")), Point) == Point(1, 2)
    assert restore(decode(encode(model, what="m")), Model) == model
    assert restore(decode(encode([Point(3, 4)], what="l")), list[Point]) == [Point(3, 4)]


def test_unserializable_value_names_what_and_type() -> None:
    with pytest.raises(errors.SerializationError) as caught:
        encode({"sock": object()}, what="result of step 'fetch'")
    assert "result of step 'fetch'" in str(caught.value)
    assert caught.value.type_name == "builtins.object"  # type: ignore[attr-defined]


def test_non_string_keys_are_refused() -> None:
    with pytest.raises(errors.SerializationError):
        encode({1: "x"}, what="v")


def test_args_hash_is_stable_and_sensitive() -> None:
    assert args_hash((1, "a"), {}, what="s") == args_hash((1, "a"), {}, what="s")
    assert args_hash((1, "a"), {}, what="s") != args_hash((1, "b"), {}, what="s")
    assert args_hash((), {"k": 1}, what="s") != args_hash((), {"k": 2}, what="s")
    assert args_hash((), {}, what="s") == args_hash((), {}, what="t")


def test_checksum_is_sha256() -> None:
    assert checksum("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def test_errors_survive_pickling() -> None:
    error = errors.NondeterminismError("diverged", run_id="r", seq=3, expected="a", found="b")
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is errors.NondeterminismError
    assert (copy.seq, copy.expected, copy.found, str(copy)) == (3, "a", "b", "diverged")
    cancelled = pickle.loads(pickle.dumps(errors.Cancelled("r", "why")))
    assert (cancelled.run_id, cancelled.reason) == ("r", "why")

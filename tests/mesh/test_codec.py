"""The codec turns registered messages into plain msgpack data and back, refusing bad fields."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mesh import codec


@dataclass(frozen=True, slots=True)
class Inner:
    count: int
    root: str


@codec.message("test.codec.everything")
@dataclass(frozen=True, slots=True)
class Everything:
    i: int
    f: float
    s: str
    b: bytes
    flag: bool
    maybe: int | None
    names: list[str]
    pair: tuple[int, str]
    seq: tuple[int, ...]
    by_name: dict[str, Inner]
    state: Literal["idle", "training"]
    row: codec.Plain
    nested: Inner
    opt_nested: Inner | None = None


@codec.message("test.codec.bounded")
@dataclass(frozen=True, slots=True)
class Bounded:
    short: str = field(metadata={"max_len": 4})
    big: bytes = field(default=b"", metadata={"max_len": 10_000})
    small_items: list[str] = field(default_factory=list, metadata={"item_max_len": 2})
    positive: int = field(default=0, metadata={"min": 0})
    rows: codec.Plain = field(default=None, metadata={"max_len": 50, "max_depth": 3})


@codec.message("test.codec.checked")
@dataclass(frozen=True, slots=True)
class Checked:
    lo: int
    hi: int

    def __post_init__(self) -> None:
        if self.lo > self.hi:
            raise ValueError(f"lo {self.lo} above hi {self.hi}")


def _everything() -> Everything:
    return Everything(
        i=-5, f=1.5, s="héllo", b=b"\x00\xff", flag=True, maybe=None, names=["a", "b"],
        pair=(3, "x"), seq=(1, 2, 3), by_name={"games": Inner(10, "ab")}, state="idle",
        row={"match_id": "m1", "scores": [1.0, 0.5], "blob": b"x", "n": None},
        nested=Inner(1, "r"), opt_nested=Inner(2, "q"),
    )


def _through_msgpack(body: object) -> object:
    return msgpack.unpackb(msgpack.packb(body, use_bin_type=True), raw=False)


def test_every_supported_annotation_round_trips_through_msgpack() -> None:
    msg = _everything()
    body = codec.to_body(msg)
    assert codec.from_body("test.codec.everything", _through_msgpack(body)) == msg


def test_kind_of_names_the_registered_kind() -> None:
    assert codec.kind_of(_everything()) == "test.codec.everything"
    assert codec.class_for("test.codec.everything") is Everything


def test_registering_a_kind_twice_raises() -> None:
    with pytest.raises(ValueError, match="already registered"):
        @codec.message("test.codec.everything")
        @dataclass(frozen=True, slots=True)
        class Again:
            x: int


def test_registering_a_mutable_or_unslotted_class_raises() -> None:
    with pytest.raises(TypeError, match="frozen=True, slots=True"):
        @codec.message("test.codec.mutable")
        @dataclass
        class Mutable:
            x: int


def test_unregistered_message_cannot_be_encoded() -> None:
    with pytest.raises(codec.EncodeError, match="not a registered message"):
        codec.to_body(Inner(1, "x"))


def test_unknown_kind_is_its_own_error() -> None:
    with pytest.raises(codec.UnknownKindError, match="unknown message kind"):
        codec.from_body("no.such.kind", {})


@pytest.mark.parametrize(
    ("change", "field_name", "expected"),
    [
        ({"i": "7"}, "i", "expected int"),
        ({"i": True}, "i", "expected int"),
        ({"f": "x"}, "f", "finite float"),
        ({"f": float("nan")}, "f", "finite float"),
        ({"s": b"bytes"}, "s", "str of at most"),
        ({"b": "text"}, "b", "bytes of at most"),
        ({"flag": 1}, "flag", "bool"),
        ({"names": "ab"}, "names", "list of at most"),
        ({"names": ["a", 3]}, "names[1]", "str of at most"),
        ({"pair": [1]}, "pair", "tuple of exactly 2"),
        ({"by_name": {"games": {"count": "x", "root": "r"}}}, "by_name['games'].count", "int"),
        ({"by_name": {5: {"count": 1, "root": "r"}}}, "by_name[key '5']", "str"),
        ({"state": "sleeping"}, "state", "one of 'idle', 'training'"),
        ({"row": [{1, 2}]}, "row", "msgpack value"),
        ({"row": {1.5: 3}}, "row", "map key of type str or int"),
        ({"nested": [1, "r"]}, "nested", "map of Inner fields"),
        ({"extra": 1}, "extra", "one of the fields"),
    ],
)
def test_bad_field_is_refused_with_its_path_and_expectation(
    change: dict, field_name: str, expected: str
) -> None:
    body = codec.to_body(_everything())
    body.update(change)
    with pytest.raises(codec.DecodeError) as err:
        codec.from_body("test.codec.everything", body)
    text = str(err.value)
    assert f"field {field_name}:" in text
    assert expected in text
    assert "test.codec.everything" in text


def test_missing_required_field_is_refused_and_defaults_fill_optional_ones() -> None:
    body = codec.to_body(_everything())
    del body["opt_nested"]
    assert codec.from_body("test.codec.everything", body).opt_nested is None
    del body["s"]
    with pytest.raises(codec.DecodeError, match="field s: expected a value"):
        codec.from_body("test.codec.everything", body)


def test_body_that_is_not_a_map_is_refused() -> None:
    with pytest.raises(codec.DecodeError, match="map of Everything fields"):
        codec.from_body("test.codec.everything", [1, 2])


def test_default_string_limit_applies_and_field_metadata_changes_it() -> None:
    body = codec.to_body(_everything())
    body["s"] = "x" * (codec.MAX_STR + 1)
    with pytest.raises(codec.DecodeError, match="str of at most 256"):
        codec.from_body("test.codec.everything", body)
    with pytest.raises(codec.DecodeError, match="str of at most 4"):
        codec.from_body("test.codec.bounded", {"short": "12345"})
    big = b"x" * 9000
    assert codec.from_body("test.codec.bounded", {"short": "ok", "big": big}).big == big


def test_item_max_len_and_min_apply_to_container_items_and_numbers() -> None:
    with pytest.raises(codec.DecodeError, match=r"small_items\[1\]: expected str of at most 2"):
        codec.from_body("test.codec.bounded", {"short": "a", "small_items": ["ab", "abc"]})
    with pytest.raises(codec.DecodeError, match=r"positive: expected int in \[0,"):
        codec.from_body("test.codec.bounded", {"short": "a", "positive": -1})


def test_default_list_limit_refuses_a_longer_list() -> None:
    body = codec.to_body(_everything())
    body["names"] = ["a"] * (codec.MAX_ITEMS + 1)
    with pytest.raises(codec.DecodeError, match="list of at most 1024"):
        codec.from_body("test.codec.everything", body)


def test_plain_values_are_bounded_in_depth_and_size() -> None:
    deep: object = 1
    for _ in range(4):
        deep = [deep]
    with pytest.raises(codec.DecodeError, match="nested at most 3 deep"):
        codec.from_body("test.codec.bounded", {"short": "a", "rows": deep})
    with pytest.raises(codec.DecodeError, match="size at most 50"):
        codec.from_body("test.codec.bounded", {"short": "a", "rows": ["x" * 60]})
    ok = {"short": "a", "rows": {"k": [1, 2.5, None, b"z"]}}
    assert codec.from_body("test.codec.bounded", ok).rows == {"k": [1, 2.5, None, b"z"]}


def test_post_init_checks_of_the_message_class_become_decode_errors() -> None:
    with pytest.raises(codec.DecodeError, match="lo 5 above hi 1"):
        codec.from_body("test.codec.checked", {"lo": 5, "hi": 1})


def test_encoding_a_message_that_breaks_its_bounds_raises_encode_error() -> None:
    with pytest.raises(codec.EncodeError, match="field short: expected str of at most 4"):
        codec.to_body(Bounded(short="too long"))


def test_integers_wider_than_64_bits_are_refused() -> None:
    body = codec.to_body(_everything())
    body["i"] = 1 << 70
    with pytest.raises(codec.DecodeError, match="field i"):
        codec.from_body("test.codec.everything", body)


def test_error_message_stays_short_for_a_huge_value() -> None:
    body = codec.to_body(_everything())
    body["s"] = "y" * 100_000
    with pytest.raises(codec.DecodeError) as err:
        codec.from_body("test.codec.everything", body)
    assert len(str(err.value)) < 300


def test_encoded_size_is_the_length_of_the_msgpack_body() -> None:
    msg = _everything()
    assert codec.encoded_size(msg) == len(msgpack.packb(codec.to_body(msg), use_bin_type=True))


_text = st.text(max_size=20)
_plain = st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 63), (1 << 64) - 1)
    | st.floats(allow_nan=False) | _text | st.binary(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=20,
)
_inner = st.builds(Inner, count=st.integers(-(1 << 63), (1 << 63) - 1), root=_text)


@settings(deadline=None, max_examples=150)
@given(
    i=st.integers(-(1 << 63), (1 << 64) - 1),
    f=st.floats(allow_nan=False, allow_infinity=False),
    s=_text, b=st.binary(max_size=64), flag=st.booleans(),
    maybe=st.none() | st.integers(0, 10),
    names=st.lists(_text, max_size=5),
    seq=st.tuples(st.integers(0, 5)) | st.just(()),
    by_name=st.dictionaries(_text, _inner, max_size=3),
    state=st.sampled_from(["idle", "training"]),
    row=_plain, nested=_inner, opt_nested=st.none() | _inner,
)
def test_any_valid_message_survives_encode_msgpack_decode(**fields: object) -> None:
    msg = Everything(pair=(1, "p"), **fields)  # type: ignore[arg-type]
    assert codec.from_body("test.codec.everything", _through_msgpack(codec.to_body(msg))) == msg


@settings(deadline=None, max_examples=150)
@given(body=st.dictionaries(st.sampled_from(["i", "f", "s", "names", "row", "junk"]), _plain))
def test_arbitrary_bodies_either_decode_or_raise_decode_error(body: dict) -> None:
    try:
        codec.from_body("test.codec.everything", body)
    except codec.DecodeError:
        pass


def test_an_unsupported_annotation_fails_at_registration_not_on_the_wire() -> None:
    with pytest.raises(TypeError, match="unsupported annotation"):
        @codec.message("test.codec.unsupported")
        @dataclass(frozen=True, slots=True)
        class Unsupported:
            when: set[int]
    assert not codec.is_registered("test.codec.unsupported")


@codec.message("test.codec.keyed")
@dataclass(frozen=True, slots=True)
class Keyed:
    by_name: dict[str, int] = field(metadata={"key_max_len": 3})


def test_key_max_len_bounds_dict_keys() -> None:
    assert codec.from_body("test.codec.keyed", {"by_name": {"abc": 1}}).by_name == {"abc": 1}
    with pytest.raises(codec.DecodeError,
                       match=r"by_name\[key 'abcd'\]: expected str of at most 3"):
        codec.from_body("test.codec.keyed", {"by_name": {"abcd": 1}})


@codec.positional
@dataclass(frozen=True, slots=True)
class Point:
    x: int
    y: int


@codec.message("test.codec.positional")
@codec.positional
@dataclass(frozen=True, slots=True)
class Path_:
    name: str
    points: list[Point]
    closed: bool = False


def test_positional_classes_encode_as_lists_and_round_trip() -> None:
    msg = Path_("p", [Point(1, 2), Point(3, 4)], closed=True)
    body = codec.to_body(msg)
    assert body == ["p", [[1, 2], [3, 4]], True]
    assert codec.from_body("test.codec.positional", _through_msgpack(body)) == msg


def test_positional_trailing_defaults_may_be_left_out_but_nothing_else() -> None:
    assert codec.from_body("test.codec.positional", ["p", []]) == Path_("p", [])
    with pytest.raises(codec.DecodeError,
                       match="list of the 3 Path_ fields \\(at least the first 2"):
        codec.from_body("test.codec.positional", ["p"])
    with pytest.raises(codec.DecodeError, match="list of the 3 Path_ fields"):
        codec.from_body("test.codec.positional", ["p", [], False, "extra"])
    with pytest.raises(codec.DecodeError, match=r"field points\[0\]\.y: expected int"):
        codec.from_body("test.codec.positional", ["p", [[1, "2"]]])
    with pytest.raises(codec.DecodeError, match="list of the 2 Point fields"):
        codec.from_body("test.codec.positional", ["p", [{"x": 1, "y": 2}]])


def test_positional_must_be_applied_before_message() -> None:
    with pytest.raises(TypeError, match="must come before"):
        @codec.positional
        @codec.message("test.codec.late-positional")
        @dataclass(frozen=True, slots=True)
        class Late:
            x: int

"""Messages as plain data: registration by kind, conversion to and from msgpack-able values.

Every mesh message is a `@dataclass(frozen=True, slots=True)` registered with
`@message("kind-name")`. `to_body` turns one into a dict of plain values (ints, floats, strings,
bytes, bools, None, lists, dicts) and `from_body` rebuilds it, checking every field against its
annotation on the way in, because a body arrives from the network and is untrusted. Encoding
checks the same rules, so a core that builds an oversized message learns it at the sender rather
than through a refusal at every receiver.

Supported annotations: `int`, `float`, `str`, `bytes`, `bool`, `X | None`, `list[X]`,
`tuple[X, ...]`, `tuple[X, Y]`, `dict[str, X]`, `dict[int, X]`, `Literal[...]`, nested dataclasses
and `Plain` (any msgpack value, bounded in depth and size; storage rows travel as `Plain`).

Per-field bounds come from `dataclasses.field(metadata=...)`:
`max_len` (string characters, bytes, list/tuple items or dict entries of the field itself;
for `Plain` its size budget), `item_max_len` (the same for the items of a container field),
`key_max_len` (the str keys of a dict field), `min` / `max` (numbers, applied to items too)
and `max_depth` (`Plain` only).
"""

from __future__ import annotations

import dataclasses
import math
import reprlib
import types
import typing
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal, TypeVar

import msgpack

# Defaults for fields that do not state a bound. Gossip messages are small; a field that
# legitimately holds more (a sync batch) raises its own bound with `max_len`.
MAX_STR = 256
MAX_BYTES = 4096
MAX_ITEMS = 1024
# `Plain` carries storage rows: nested, but never deep. Size = items + string/bytes lengths.
PLAIN_MAX_DEPTH = 16
PLAIN_MAX_SIZE = 1 << 20


class _PlainMarker:
    """Marks an annotation as "any msgpack value" (see `Plain`)."""

    def __repr__(self) -> str:
        return "codec.Plain"


_PLAIN = _PlainMarker()

# `object` to type checkers, "any bounded msgpack value" to the codec.
Plain = Annotated[object, _PLAIN]


class CodecError(ValueError):
    """A message that cannot be converted; the message names the field and the problem."""


class DecodeError(CodecError):
    """A body from the network does not match the message class it claims to be."""


class UnknownKindError(DecodeError):
    """No message class is registered under the kind a body claims."""


class EncodeError(CodecError):
    """A message built locally breaks its own field rules (a bug in the sender)."""


# The one process-wide table of message kinds: the decorator fills it at import time, like a
# URL router; the wire looks kinds up here.
_CLASS_BY_KIND: dict[str, type] = {}
_KIND_BY_CLASS: dict[type, str] = {}
_COMPILED: dict[type, _Conv] = {}
_POSITIONAL: set[type] = set()

MAX_KIND_LEN = 64

T = TypeVar("T")


def message(kind: str) -> Callable[[type[T]], type[T]]:
    """Register a frozen, slotted dataclass as the message class for `kind`."""
    if not isinstance(kind, str) or not kind or len(kind) > MAX_KIND_LEN:
        raise ValueError(f"message kind must be a non-empty str of at most {MAX_KIND_LEN} "
                         f"characters, got {kind!r}")

    def register(cls: type[T]) -> type[T]:
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"@message({kind!r}) needs a dataclass, got {cls!r}")
        params = cls.__dataclass_params__  # type: ignore[attr-defined]
        if not params.frozen or not hasattr(cls, "__slots__"):
            raise TypeError(f"@message({kind!r}): {cls.__qualname__} must be "
                            "@dataclass(frozen=True, slots=True)")
        if kind in _CLASS_BY_KIND:
            raise ValueError(f"message kind {kind!r} is already registered to "
                             f"{_CLASS_BY_KIND[kind].__qualname__}")
        if cls in _KIND_BY_CLASS:
            raise ValueError(f"{cls.__qualname__} is already registered as "
                             f"{_KIND_BY_CLASS[cls]!r}")
        _precompile(cls)
        _CLASS_BY_KIND[kind] = cls
        _KIND_BY_CLASS[cls] = kind
        return cls

    return register


def positional(cls: type[T]) -> type[T]:
    """Encode this dataclass as a list of its field values in declaration order, not a map.

    For classes sent often and in bulk (manifests ride on most gossip messages), where the field
    names would be a third of the bytes. Apply below `@message`, and only to classes whose field
    order is part of the protocol: reordering fields changes the wire format. Trailing fields
    with defaults may be left out by the sender.
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"@codec.positional needs a dataclass, got {cls!r}")
    if cls in _COMPILED:
        raise TypeError(f"@codec.positional on {cls.__qualname__} must come before (below) "
                        "@codec.message")
    _POSITIONAL.add(cls)
    return cls


def kind_of(msg: object) -> str:
    """The registered kind of a message instance."""
    try:
        return _KIND_BY_CLASS[type(msg)]
    except KeyError:
        raise EncodeError(f"{type(msg).__qualname__} is not a registered message class "
                          "(decorate it with @codec.message)") from None


def class_for(kind: str) -> type:
    """The message class registered under `kind`; raises UnknownKindError."""
    try:
        return _CLASS_BY_KIND[kind]
    except (KeyError, TypeError):
        raise UnknownKindError(f"unknown message kind {describe_value(kind)}") from None


def is_registered(kind: str) -> bool:
    return kind in _CLASS_BY_KIND


def to_body(msg: object) -> Any:
    """The message's fields as a dict (a list for `positional` classes) of msgpack-able values.

    Raises EncodeError.
    """
    kind = kind_of(msg)
    try:
        return _compiled(type(msg)).enc(msg)  # type: ignore[return-value]
    except _Bad as bad:
        raise EncodeError(f"message {kind!r}: {bad.describe()}") from None


def from_body(kind: str, body: object) -> Any:
    """Rebuild the message registered as `kind` from plain data; raises DecodeError."""
    cls = class_for(kind)
    try:
        return _compiled(cls).dec(body)
    except _Bad as bad:
        raise DecodeError(f"message {kind!r}: {bad.describe()}") from None


def encoded_size(msg: object) -> int:
    """Bytes of the msgpack encoding of the message body (what the simulator charges)."""
    return len(msgpack.packb(to_body(msg), use_bin_type=True))


# --- compiled converters -------------------------------------------------------------------
#
# Each annotation is compiled once into an (encode, decode) pair of closures, so a simulator
# pushing millions of messages does not re-inspect type hints. Errors raise `_Bad`, which
# collects the field path as it unwinds: the success path builds no strings.


class _Bad(Exception):
    def __init__(self, expected: str, value: object) -> None:
        super().__init__(expected)
        self.expected = expected
        self.value = value
        self.path: list[str] = []

    def at(self, part: str) -> _Bad:
        self.path.append(part)
        return self

    def describe(self) -> str:
        where = "".join(reversed(self.path)).lstrip(".") or "<body>"
        return f"field {where}: expected {self.expected}, got {describe_value(self.value)}"


_SHORT = reprlib.Repr()
_SHORT.maxlevel = 2
_SHORT.maxlist = _SHORT.maxtuple = _SHORT.maxdict = 4
_SHORT.maxstring = _SHORT.maxother = 40


def describe_value(value: object) -> str:
    """Type and a short repr: error messages must stay one line even for a hostile value."""
    return f"{type(value).__name__} {_SHORT.repr(value)}"


@dataclasses.dataclass(frozen=True, slots=True)
class _Conv:
    enc: Callable[[object], object]
    dec: Callable[[object], object]


def _compiled(cls: type) -> _Conv:
    conv = _COMPILED.get(cls)
    if conv is None:
        conv = _dataclass_conv(cls)
        _COMPILED[cls] = conv
    return conv


def _precompile(cls: type) -> None:
    """Compile at registration, so an unsupported annotation fails at import, not on the wire.

    An annotation naming a class defined later in the module cannot be resolved yet; that
    class is compiled on first use instead.
    """
    try:
        typing.get_type_hints(cls, include_extras=True)
    except NameError:
        return
    _compiled(cls)


def _dataclass_conv(cls: type) -> _Conv:
    try:
        hints = typing.get_type_hints(cls, include_extras=True)
    except NameError as err:
        raise TypeError(f"cannot resolve the annotations of {cls.__qualname__}: {err}") from None
    fields = [f for f in dataclasses.fields(cls) if f.init]
    specs: list[tuple[str, _Conv, bool, object]] = []
    for f in fields:
        conv = _conv_for(hints[f.name], f.metadata, f"{cls.__qualname__}.{f.name}")
        has_default = (f.default is not dataclasses.MISSING
                       or f.default_factory is not dataclasses.MISSING)
        specs.append((f.name, conv, has_default, f))
    if cls in _POSITIONAL:
        return _positional_conv(cls, specs)
    names = frozenset(name for name, _, _, _ in specs)
    label = f"a map of {cls.__qualname__} fields"

    def enc(msg: object) -> object:
        if type(msg) is not cls:
            raise _Bad(cls.__qualname__, msg)
        out: dict[str, object] = {}
        for name, conv, _, _ in specs:
            try:
                out[name] = conv.enc(getattr(msg, name))
            except _Bad as bad:
                raise bad.at("." + name) from None
        return out

    def dec(body: object) -> object:
        if type(body) is not dict:
            raise _Bad(label, body)
        for key in body:
            if key not in names:
                # A field this version does not know means the sender speaks another
                # protocol version than its envelope claims: refuse rather than guess.
                raise _Bad(f"one of the fields {sorted(names)}", key).at(f".{key!s:.40}")
        kwargs: dict[str, object] = {}
        for name, conv, has_default, _ in specs:
            if name in body:
                try:
                    kwargs[name] = conv.dec(body[name])
                except _Bad as bad:
                    raise bad.at("." + name) from None
            elif not has_default:
                raise _Bad("a value (the field is required)", None).at("." + name)
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as err:
            # __post_init__ checks of the message class itself.
            raise _Bad(f"a valid {cls.__qualname__} ({err})", body) from None

    return _Conv(enc, dec)


def _positional_conv(cls: type, specs: list[tuple[str, _Conv, bool, object]]) -> _Conv:
    # Only a run of defaulted fields at the end may be left out.
    required = max((i + 1 for i, (_, _, has_default, _) in enumerate(specs) if not has_default),
                   default=0)
    label = (f"a list of the {len(specs)} {cls.__qualname__} fields"
             + ("" if required == len(specs) else f" (at least the first {required})"))

    def enc(msg: object) -> object:
        if type(msg) is not cls:
            raise _Bad(cls.__qualname__, msg)
        out: list[object] = []
        for name, conv, _, _ in specs:
            try:
                out.append(conv.enc(getattr(msg, name)))
            except _Bad as bad:
                raise bad.at("." + name) from None
        return out

    def dec(body: object) -> object:
        if type(body) is not list or not required <= len(body) <= len(specs):
            raise _Bad(label, body)
        kwargs: dict[str, object] = {}
        for (name, conv, _, _), value in zip(specs, body, strict=False):
            try:
                kwargs[name] = conv.dec(value)
            except _Bad as bad:
                raise bad.at("." + name) from None
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as err:
            raise _Bad(f"a valid {cls.__qualname__} ({err})", body) from None

    return _Conv(enc, dec)


def _conv_for(tp: object, meta: Mapping[str, object], where: str) -> _Conv:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is Annotated:
        if any(isinstance(m, _PlainMarker) for m in tp.__metadata__):  # type: ignore[attr-defined]
            return _plain_conv(meta)
        return _conv_for(args[0], meta, where)
    if tp is int:
        return _int_conv(meta)
    if tp is float:
        return _float_conv(meta)
    if tp is str:
        return _str_conv(_limit(meta, "max_len", MAX_STR))
    if tp is bytes:
        return _bytes_conv(_limit(meta, "max_len", MAX_BYTES))
    if tp is bool:
        return _bool_conv()
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and len(args) == 2:
            return _optional_conv(_conv_for(rest[0], meta, where))
        raise TypeError(f"{where}: only `X | None` unions are supported, got {tp!r}")
    if origin is Literal:
        return _literal_conv(args)
    item_meta = _item_meta(meta)
    if origin is list:
        return _list_conv(_conv_for(args[0], item_meta, where), _limit(meta, "max_len", MAX_ITEMS),
                          as_tuple=False)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return _list_conv(_conv_for(args[0], item_meta, where),
                              _limit(meta, "max_len", MAX_ITEMS), as_tuple=True)
        return _fixed_tuple_conv([_conv_for(a, item_meta, where) for a in args])
    if origin is dict:
        key_tp, value_tp = args
        if key_tp not in (str, int):
            raise TypeError(f"{where}: dict keys must be str or int, got {key_tp!r}")
        key_meta = {"max_len": meta["key_max_len"]} if "key_max_len" in meta else {}
        key_conv = _conv_for(key_tp, key_meta, where)
        return _dict_conv(key_conv, _conv_for(value_tp, item_meta, where),
                          _limit(meta, "max_len", MAX_ITEMS))
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _nested_conv(tp)
    raise TypeError(f"{where}: unsupported annotation {tp!r} (use codec.Plain for free-form data)")


def _limit(meta: Mapping[str, object], key: str, default: int) -> int:
    value = meta.get(key, default)
    if type(value) is not int or value < 0:
        raise TypeError(f"field metadata {key!r} must be a non-negative int, got {value!r}")
    return value


def _item_meta(meta: Mapping[str, object]) -> dict[str, object]:
    item: dict[str, object] = {k: meta[k] for k in ("min", "max") if k in meta}
    if "item_max_len" in meta:
        item["max_len"] = meta["item_max_len"]
    return item


def _int_conv(meta: Mapping[str, object]) -> _Conv:
    lo = meta.get("min")
    hi = meta.get("max")
    # msgpack cannot carry integers wider than 64 bits; refuse them here with a clear message.
    lo = -(1 << 63) if lo is None else max(int(lo), -(1 << 63))  # type: ignore[call-overload]
    hi = (1 << 64) - 1 if hi is None else min(int(hi), (1 << 64) - 1)  # type: ignore[call-overload]
    label = f"int in [{lo}, {hi}]"

    def check(value: object) -> object:
        if type(value) is not int or not lo <= value <= hi:
            raise _Bad(label, value)
        return value

    return _Conv(check, check)


def _float_conv(meta: Mapping[str, object]) -> _Conv:
    lo = meta.get("min")
    hi = meta.get("max")
    lo_f = -math.inf if lo is None else float(lo)  # type: ignore[arg-type]
    hi_f = math.inf if hi is None else float(hi)  # type: ignore[arg-type]
    label = f"finite float in [{lo_f}, {hi_f}]"

    def check(value: object) -> object:
        # ints are accepted: msgpack senders may write 2.0 as 2.
        if type(value) is float or type(value) is int:
            as_float = float(value)
            if math.isfinite(as_float) and lo_f <= as_float <= hi_f:
                return as_float
        raise _Bad(label, value)

    return _Conv(check, check)


def _str_conv(max_len: int) -> _Conv:
    label = f"str of at most {max_len} characters"

    def check(value: object) -> object:
        if type(value) is not str or len(value) > max_len:
            raise _Bad(label, value)
        return value

    return _Conv(check, check)


def _bytes_conv(max_len: int) -> _Conv:
    label = f"bytes of at most {max_len} bytes"

    def check(value: object) -> object:
        if type(value) is not bytes or len(value) > max_len:
            raise _Bad(label, value)
        return value

    return _Conv(check, check)


def _bool_conv() -> _Conv:
    def check(value: object) -> object:
        if type(value) is not bool:
            raise _Bad("bool", value)
        return value

    return _Conv(check, check)


def _optional_conv(inner: _Conv) -> _Conv:
    def enc(value: object) -> object:
        return None if value is None else inner.enc(value)

    def dec(value: object) -> object:
        return None if value is None else inner.dec(value)

    return _Conv(enc, dec)


def _literal_conv(choices: tuple[object, ...]) -> _Conv:
    allowed = {(type(c), c) for c in choices}
    label = "one of " + ", ".join(repr(c) for c in choices)

    def check(value: object) -> object:
        if (type(value), value) not in allowed:
            raise _Bad(label, value)
        return value

    return _Conv(check, check)


def _list_conv(item: _Conv, max_len: int, *, as_tuple: bool) -> _Conv:
    label = f"{'tuple' if as_tuple else 'list'} of at most {max_len} items"
    accepted = (tuple,) if as_tuple else (list,)

    def enc(value: object) -> object:
        if type(value) not in accepted or len(value) > max_len:  # type: ignore[arg-type]
            raise _Bad(label, value)
        out = []
        for i, v in enumerate(value):  # type: ignore[arg-type]
            try:
                out.append(item.enc(v))
            except _Bad as bad:
                raise bad.at(f"[{i}]") from None
        return out

    def dec(value: object) -> object:
        if type(value) not in (list, tuple) or len(value) > max_len:  # type: ignore[arg-type]
            raise _Bad(label, value)
        out = []
        for i, v in enumerate(value):  # type: ignore[arg-type]
            try:
                out.append(item.dec(v))
            except _Bad as bad:
                raise bad.at(f"[{i}]") from None
        return tuple(out) if as_tuple else out

    return _Conv(enc, dec)


def _fixed_tuple_conv(items: list[_Conv]) -> _Conv:
    label = f"tuple of exactly {len(items)} items"

    def convert(value: object, accepted: tuple[type, ...], decode: bool) -> object:
        if type(value) not in accepted or len(value) != len(items):  # type: ignore[arg-type]
            raise _Bad(label, value)
        out = []
        for i, (conv, v) in enumerate(zip(items, value, strict=True)):  # type: ignore[call-overload]
            try:
                out.append(conv.dec(v) if decode else conv.enc(v))
            except _Bad as bad:
                raise bad.at(f"[{i}]") from None
        return tuple(out) if decode else out

    return _Conv(lambda v: convert(v, (tuple,), False), lambda v: convert(v, (list, tuple), True))


def _dict_conv(key: _Conv, value_conv: _Conv, max_len: int) -> _Conv:
    label = f"map of at most {max_len} entries"

    def convert(value: object, decode: bool) -> object:
        if type(value) is not dict or len(value) > max_len:
            raise _Bad(label, value)
        out = {}
        for k, v in value.items():
            try:
                k2 = key.dec(k) if decode else key.enc(k)
            except _Bad as bad:
                raise bad.at(f"[key {str(k)[:40]!r}]") from None
            try:
                out[k2] = value_conv.dec(v) if decode else value_conv.enc(v)
            except _Bad as bad:
                raise bad.at(f"[{k2!r}]") from None
        return out

    return _Conv(lambda v: convert(v, False), lambda v: convert(v, True))


def _nested_conv(cls: type) -> _Conv:
    # Looked up on each call, not at compile time, so self-referencing classes compile.
    return _Conv(lambda v: _compiled(cls).enc(v), lambda v: _compiled(cls).dec(v))


def _plain_conv(meta: Mapping[str, object]) -> _Conv:
    max_size = _limit(meta, "max_len", PLAIN_MAX_SIZE)
    max_depth = _limit(meta, "max_depth", PLAIN_MAX_DEPTH)

    def convert(value: object) -> object:
        budget = [max_size]
        return _plain_value(value, max_depth, budget, max_size, max_depth)

    return _Conv(convert, convert)


_PLAIN_SCALARS = (type(None), bool, int, float)


def _plain_value(value: object, depth: int, budget: list[int], max_size: int,
                 max_depth: int) -> object:
    """Copy a free-form msgpack value, charging its size against `budget`; tuples become lists."""
    budget[0] -= 1
    kind = type(value)
    if kind in _PLAIN_SCALARS:
        if kind is int and not -(1 << 63) <= value < (1 << 64):  # type: ignore[operator]
            raise _Bad("int that fits in 64 bits", value)
    elif kind is str or kind is bytes:
        budget[0] -= len(value)  # type: ignore[arg-type]
    elif kind is list or kind is tuple or kind is dict:
        if depth <= 0:
            raise _Bad(f"value nested at most {max_depth} deep", value)
        if kind is dict:
            out_map: dict[object, object] = {}
            for k, v in value.items():  # type: ignore[attr-defined]
                if type(k) is not str and type(k) is not int:
                    raise _Bad("map key of type str or int", k)
                out_map[_plain_value(k, depth - 1, budget, max_size, max_depth)] = (
                    _plain_value(v, depth - 1, budget, max_size, max_depth))
            value = out_map
        else:
            value = [_plain_value(v, depth - 1, budget, max_size, max_depth)
                     for v in value]  # type: ignore[attr-defined]
    else:
        raise _Bad("a msgpack value (None, bool, int, float, str, bytes, list, map)", value)
    if budget[0] < 0:
        raise _Bad(f"value of size at most {max_size} (items + string/bytes lengths)", value)
    return value

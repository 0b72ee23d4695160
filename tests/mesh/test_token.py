"""A join token carries cluster id, secret and issuer address, and refuses damage clearly."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mesh.token import PREFIX, JoinToken, TokenError, make_token, parse_token

SECRET = bytes(range(32))


def test_token_round_trips_cluster_secret_and_address() -> None:
    text = make_token("c0ffee", SECRET, "10.1.2.3:8770")
    assert text.startswith(PREFIX)
    assert parse_token(text) == JoinToken("c0ffee", SECRET, "10.1.2.3:8770")


def test_surrounding_whitespace_from_a_paste_is_ignored() -> None:
    text = make_token("c1", SECRET, "[::1]:8770")
    assert parse_token(f"  {text}\n").address == "[::1]:8770"


def test_a_truncated_token_is_refused() -> None:
    text = make_token("c1", SECRET, "host:8770")
    with pytest.raises(TokenError, match="damaged|checksum|layout"):
        parse_token(text[:-6])


def test_a_mistyped_character_is_caught_by_the_checksum() -> None:
    text = make_token("c1", SECRET, "host:8770")
    middle = len(PREFIX) + 20
    typo = text[:middle] + ("A" if text[middle] != "A" else "B") + text[middle + 1:]
    with pytest.raises(TokenError):
        parse_token(typo)


def test_a_token_without_the_prefix_says_where_to_get_one() -> None:
    with pytest.raises(TokenError, match="must start with 'rrn1.'.*ringrift-node init"):
        parse_token("hello")


def test_an_oversized_token_is_refused_before_decoding() -> None:
    with pytest.raises(TokenError, match="characters"):
        parse_token(PREFIX + "A" * 5000)


@pytest.mark.parametrize(
    ("cluster", "secret", "address", "expected"),
    [
        ("bad id!", SECRET, "h:1", "cluster id"),
        ("c1", b"short", "h:1", "cluster secret"),
        ("c1", SECRET, "no-port", "address"),
        ("c1", SECRET, "h:70000", "address"),
        ("c1", SECRET, "h o:80", "address"),
    ],
)
def test_make_token_refuses_bad_fields(cluster: str, secret: bytes, address: str,
                                       expected: str) -> None:
    with pytest.raises(TokenError, match=expected):
        make_token(cluster, secret, address)


def test_repr_does_not_show_the_secret() -> None:
    assert SECRET.hex() not in repr(parse_token(make_token("c1", SECRET, "h:1")))
    assert "secret" not in repr(JoinToken("c1", SECRET, "h:1"))


@settings(deadline=None, max_examples=200)
@given(text=st.text(max_size=200))
def test_arbitrary_text_is_refused_with_token_error_or_parses(text: str) -> None:
    try:
        parse_token(PREFIX + text)
    except TokenError:
        pass

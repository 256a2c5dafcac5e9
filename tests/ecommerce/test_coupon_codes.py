"""Coupon codes: unguessable, free of look-alikes, and every common typo is caught."""

from __future__ import annotations

import math
import secrets

import pytest

from ecommerce.domain import coupon_codes
from ecommerce.domain.errors import DomainError

LOOK_ALIKES = set("0O1IL")


def symbols(code: str) -> str:
    return code.replace("-", "")


def test_codes_carry_at_least_80_bits_of_entropy() -> None:
    alphabet = coupon_codes.ALPHABET
    assert len(set(alphabet)) == len(alphabet) == 31
    random_symbols = len(symbols(coupon_codes.new_code())) - 1  # the last one is the check
    assert random_symbols == coupon_codes.RANDOM_SYMBOLS
    assert random_symbols * math.log2(len(alphabet)) >= 80


def test_codes_use_no_look_alikes_and_read_in_groups() -> None:
    assert not LOOK_ALIKES & set(coupon_codes.ALPHABET)
    for _ in range(200):
        code = coupon_codes.new_code()
        assert not LOOK_ALIKES & set(code)
        assert [len(g) for g in code.split("-")] == [4, 4, 4, 4, 2]
        assert set(symbols(code)) <= set(coupon_codes.ALPHABET)


def test_every_single_substitution_is_caught() -> None:
    for _ in range(20):
        valid = symbols(coupon_codes.new_code())
        assert coupon_codes.is_valid(valid)
        for position, original in enumerate(valid):
            for replacement in coupon_codes.ALPHABET:
                if replacement != original:
                    typo = valid[:position] + replacement + valid[position + 1 :]
                    assert not coupon_codes.is_valid(typo), (valid, position, replacement)


def test_every_adjacent_transposition_is_caught() -> None:
    for _ in range(200):
        valid = symbols(coupon_codes.new_code())
        for i in range(len(valid) - 1):
            if valid[i] != valid[i + 1]:
                swapped = valid[:i] + valid[i + 1] + valid[i] + valid[i + 2 :]
                assert not coupon_codes.is_valid(swapped), (valid, i)


def test_codes_are_unique_over_many_draws() -> None:
    codes = {coupon_codes.new_code() for _ in range(50_000)}
    assert len(codes) == 50_000


def test_reading_forgives_case_spaces_and_dashes() -> None:
    code = coupon_codes.new_code()
    for typed in (code, code.lower(), symbols(code), " ".join(code.split("-")), f" {code} "):
        assert coupon_codes.parse("code", typed) == code


@pytest.mark.parametrize(
    ("typed", "problem"),
    [
        ("", "is required"),
        ("ABCD", "must have 18 symbols, not counting dashes"),
        ("0BCD-EFGH-JKMN-PQRS-TU", "may only use the symbols 23456789ABCDEFGHJKMNPQRSTUVWXYZ"),
    ],
)
def test_malformed_codes_are_refused_on_the_named_field(typed: str, problem: str) -> None:
    with pytest.raises(DomainError) as excinfo:
        coupon_codes.parse("codes[3]", typed)
    assert excinfo.value.reason == "INVALID_FIELD"
    assert [(v.field, v.description) for v in excinfo.value.violations] == [("codes[3]", problem)]


def test_a_typo_is_refused_before_any_lookup() -> None:
    code = symbols(coupon_codes.new_code())
    typo = code[:5] + ("A" if code[5] != "A" else "B") + code[6:]
    with pytest.raises(DomainError) as excinfo:
        coupon_codes.parse("code", typo)
    assert [v.description for v in excinfo.value.violations] == [
        "has a typo: its check symbol does not match"
    ]


@pytest.mark.parametrize("draw", [0, 1, 30, 31, 123_456_789_012_345, coupon_codes.MODULUS**17 - 1])
def test_a_drawn_code_is_its_payload_with_the_check_symbol(
    monkeypatch: pytest.MonkeyPatch, draw: int
) -> None:
    # The payload is the draw in base 31, least significant symbol first.
    monkeypatch.setattr(secrets, "randbelow", lambda _, drawn=draw: drawn)
    payload, number = "", draw
    for _ in range(coupon_codes.RANDOM_SYMBOLS):
        number, digit = divmod(number, coupon_codes.MODULUS)
        payload += coupon_codes.ALPHABET[digit]
    expected = coupon_codes.group(payload + coupon_codes.check_symbol(payload))
    assert coupon_codes.new_code() == expected
    assert coupon_codes.is_valid(expected.replace("-", ""))

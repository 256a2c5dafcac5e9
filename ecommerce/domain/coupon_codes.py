"""Domain room: coupon codes that are unguessable, easy to read aloud, and reject typos."""

from __future__ import annotations

import hashlib
import math
import secrets

from servicekit.validation import Validator

# A code is 17 symbols drawn with `secrets` from a 31-symbol alphabet
# (17 x log2(31) = 84.2 bits), then one check symbol, shown in groups of four:
# "7KQW-M3XR-Z9PT-HC4V-NA". The check makes the position-weighted sum of all 18
# symbols divisible by 31. Because 31 is prime and every weight (1..18) is
# non-zero modulo 31, a single substitution changes the sum by a non-zero
# amount, and swapping two adjacent symbols changes it by their difference.

# Digits and capitals without 0/O, 1/I/L: nothing a reader can confuse.
ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
RANDOM_SYMBOLS = 17
GROUP = 4
LENGTH = RANDOM_SYMBOLS + 1
MODULUS = len(ALPHABET)
ENTROPY_BITS = RANDOM_SYMBOLS * math.log2(MODULUS)

_VALUES = {symbol: value for value, symbol in enumerate(ALPHABET)}
_SEPARATORS = str.maketrans("", "", "- ")


def _weighted_sum(symbols: str) -> int:
    return sum(weight * _VALUES[s] for weight, s in enumerate(symbols, start=1))


# The check symbol's weight, inverted modulo 31 once.
_CHECK_INVERSE = pow(LENGTH, -1, MODULUS)


def _check_for(weighted_sum: int) -> str:
    """The symbol that, at weight LENGTH, makes a payload's `weighted_sum` divisible by 31."""
    return ALPHABET[(-weighted_sum * _CHECK_INVERSE) % MODULUS]


def check_symbol(payload: str) -> str:
    """The symbol that, appended at weight LENGTH, makes the weighted sum divisible by 31."""
    return _check_for(_weighted_sum(payload))


def is_valid(symbols: str) -> bool:
    """True when `symbols` (ungrouped, canonical alphabet) carries a correct check symbol."""
    return (
        len(symbols) == LENGTH
        and all(s in _VALUES for s in symbols)
        and _weighted_sum(symbols) % MODULUS == 0
    )


def group(symbols: str) -> str:
    return "-".join(symbols[i : i + GROUP] for i in range(0, len(symbols), GROUP))


_PAYLOADS = MODULUS**RANDOM_SYMBOLS


def new_code() -> str:
    # One uniform draw from `secrets` over all 31^17 payloads, written in base 31: the
    # same distribution as 17 draws of one symbol each, for one read of the OS's
    # randomness instead of seventeen. The weighted sum is added up digit by digit on
    # the way, so the symbols are not read back for their check symbol.
    number = secrets.randbelow(_PAYLOADS)
    symbols = []
    total = 0
    for weight in range(1, LENGTH):
        number, digit = divmod(number, MODULUS)
        symbols.append(ALPHABET[digit])
        total += weight * digit
    symbols.append(_check_for(total))
    return group("".join(symbols))


def read(v: Validator, field: str, raw: str) -> str | None:
    """The canonical grouped form of a code typed by a person; None after noting why not.

    Lower case, spaces and missing or misplaced dashes are forgiven; a wrong
    symbol is refused here, before anything is looked up.
    """
    symbols = raw.translate(_SEPARATORS).upper()
    if not symbols:
        v.add(field, "is required")
    elif len(symbols) != LENGTH:
        v.add(field, f"must have {LENGTH} symbols, not counting dashes")
    elif any(s not in _VALUES for s in symbols):
        v.add(field, f"may only use the symbols {ALPHABET}")
    elif not is_valid(symbols):
        v.add(field, "has a typo: its check symbol does not match")
    else:
        return group(symbols)
    return None


def parse(field: str, raw: str) -> str:
    """Like `read`, but refuses a bad code at once with INVALID_FIELD."""
    v = Validator()
    code = read(v, field, raw)
    v.done(f"{field} is not a valid coupon code")
    assert code is not None
    return code


def fingerprint(code: str) -> str:
    """A coupon's public name: the hex SHA-256 of its code as printed.

    Codes carry at least 80 random bits, so the hash cannot be turned back into a
    usable code, yet anyone who holds the code can find its coupon by it.
    """
    return hashlib.sha256(code.encode("ascii")).hexdigest()

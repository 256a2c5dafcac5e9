"""Hostile authorization headers: forged, tampered and malformed tokens."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable
from typing import Any

import grpc
import jwt
import pytest
from hypothesis import given, note
from hypothesis import strategies as st

from servicekit.auth import generate_signing_key
from tests.auth import Callers
from tests.security.hostile import (
    HEADER_EXAMPLES,
    RPCS,
    Metadata,
    Rpc,
    Stack,
    assert_serving,
    exercise,
    hostile_settings,
)

# ---------------------------------------------------------------- hostile credentials


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


OTHER_KEY = generate_signing_key()[0]
PRINTABLE = st.characters(min_codepoint=0x20, max_codepoint=0x7E)  # what HTTP/2 lets through


def _good_claims() -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": "pointsbridge",
        "sub": "ecommerce",
        "roles": ["admin", "service"],
        "iat": now,
        "exp": now + 3600,
    }


# Each turns a good token's claims into bad ones: signed with the real key, still refused.
DEFECTS: dict[str, Callable[[dict[str, Any]], None]] = {
    "expired": lambda c: c.update(exp=c["iat"] - 1),
    "issued in the future": lambda c: c.update(iat=c["iat"] + 86_400),
    "exp not a number": lambda c: c.update(exp="tomorrow"),
    "exp infinite": lambda c: c.update(exp=float("inf")),
    "no exp": lambda c: c.pop("exp"),
    "no sub": lambda c: c.pop("sub"),
    "no iss": lambda c: c.pop("iss"),
    "wrong iss": lambda c: c.update(iss="evil"),
    "empty sub": lambda c: c.update(sub=""),
    "sub not a string": lambda c: c.update(sub=["ecommerce"]),
    "no roles": lambda c: c.pop("roles"),
    "empty roles": lambda c: c.update(roles=[]),
    "unknown role": lambda c: c.update(roles=["root"]),
    "roles not a list": lambda c: c.update(roles="admin"),
}


def _signed_with_defect(defect: str, signing_key: bytes) -> str:
    claims = _good_claims()
    DEFECTS[defect](claims)
    return jwt.encode(claims, signing_key, algorithm="ES256")


def _forged(claims: dict[str, Any], key: bytes) -> str:
    return jwt.encode(claims, key, algorithm="ES256")


def _tampered(position: int, replacement: str, superuser: str) -> str:
    """The real superuser token with one character of its signature changed."""
    head, body, signature = superuser.split(".")
    # Not the last character: some of its bits are padding, so changing it may change nothing.
    index = position % (len(signature) - 1)
    if signature[index] == replacement:
        replacement = "B" if replacement == "A" else "A"
    return ".".join((head, body, signature[:index] + replacement + signature[index + 1 :]))


def _resigned_claims(roles: list[str], superuser: str) -> str:
    """Claims swapped for others, under the real token's header and signature."""
    head, _, signature = superuser.split(".")
    claims = {**_good_claims(), "roles": roles, "sub": "mallory"}
    return ".".join((head, _b64(json.dumps(claims).encode()), signature))


JWT_HEADERS = st.one_of(
    st.fixed_dictionaries(
        {
            "alg": st.sampled_from(["ES256", "HS256", "none", "RS256", "", "ES512"]),
            "typ": st.sampled_from(["JWT", "", "at+jwt"]),
        }
    ).map(lambda h: json.dumps(h).encode()),
    st.sampled_from([b"[" * 4000, b'{"alg":' * 800, b"null", b"[]", b'"ES256"', b"\xff\xfe"]),
)
JWT_CLAIMS = st.fixed_dictionaries(
    {
        "iss": st.sampled_from(["pointsbridge", "evil", ""]),
        "sub": st.sampled_from(["ecommerce", "admin", "", "seed-customer"]),
        "roles": st.lists(st.sampled_from(["admin", "service", "customer", "root"]), max_size=3),
        "exp": st.integers(-(2**40), 2**40),
    }
).map(lambda c: json.dumps(c).encode())


def tokens(auth: Callers) -> st.SearchStrategy[str]:
    superuser, signing_key = auth.superuser, auth.signing_key.read_bytes()
    return st.one_of(
        st.text(PRINTABLE, max_size=200),
        st.builds(
            lambda c, n: c * n, st.text(PRINTABLE, min_size=1, max_size=3), st.integers(1, 7000)
        ),
        st.builds(
            lambda h, c, s: f"{_b64(h)}.{_b64(c)}.{_b64(s)}",
            JWT_HEADERS,
            JWT_CLAIMS,
            st.binary(max_size=96),
        ),
        st.builds(_forged, JWT_CLAIMS.map(json.loads), st.just(OTHER_KEY)),
        st.builds(_signed_with_defect, st.sampled_from(sorted(DEFECTS)), st.just(signing_key)),
        st.builds(_tampered, st.integers(0, 200), st.sampled_from("ABab019_-"), st.just(superuser)),
        st.builds(
            _resigned_claims,
            st.lists(st.sampled_from(["admin", "service", "customer"]), min_size=1),
            st.just(superuser),
        ),
        st.sampled_from(
            [superuser + ".", superuser[:-10], "." * 2, "a.b.c", superuser.replace(".", "")]
        ),
    )


SCHEMES = st.sampled_from(
    ["Bearer ", "bearer ", "BEARER ", "Bearer  ", "", "Basic ", "Token ", "Bearer"]
)


def headers(auth: Callers) -> st.SearchStrategy[Metadata]:
    value = st.builds(lambda scheme, token: (scheme + token)[:6000], SCHEMES, tokens(auth))
    one = value.map(lambda v: (("authorization", v),))
    return st.one_of(
        st.just(()),
        one,
        # the first header is the one that counts; a good one after it must not rescue it
        value.map(lambda v: (("authorization", v), ("authorization", f"Bearer {auth.superuser}"))),
        st.builds(
            lambda v: (("x-authorization", f"Bearer {auth.superuser}"), ("authorization", v)), value
        ),
        st.just((("x-api-key", auth.superuser), ("authorization-bin", b"\x00\xff"))),
    )


def _run_headers(stack: Stack, auth: Callers) -> None:
    @hostile_settings(stack.examples(HEADER_EXAMPLES))
    @given(rpc=st.sampled_from(RPCS), metadata=headers(auth=auth))
    def hostile_credentials(rpc: Rpc, metadata: Metadata) -> None:
        note(f"metadata: {[(k, v[:300]) for k, v in metadata]!r}")
        answer = exercise(stack, rpc, b"", metadata)
        presented = any(key == "authorization" for key, _ in metadata)
        expected = "INVALID_CREDENTIALS" if presented else "MISSING_CREDENTIALS"
        assert (answer.code, answer.reason) == (grpc.StatusCode.UNAUTHENTICATED, expected), (
            str(rpc),
            str(answer),
        )

    hostile_credentials()


@pytest.mark.asyncio(loop_scope="module")
async def test_hostile_authorization_headers_are_unauthenticated_and_change_nothing(
    stack: Stack,
    auth: Callers,
) -> None:
    def refused() -> int:
        code = grpc.StatusCode.UNAUTHENTICATED.name
        return sum(n for (_, seen, _), n in stack.seen.items() if seen == code)

    before = refused()
    await asyncio.to_thread(_run_headers, stack, auth)
    assert refused() - before >= stack.examples(HEADER_EXAMPLES)
    await asyncio.to_thread(assert_serving, stack)

"""Who is calling, and may they: bearer tokens, mTLS identities, per-RPC rules, rate limits."""

from __future__ import annotations

import contextvars
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import grpc
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from servicekit.config import ConfigError
from servicekit.status import Undecodable, refusal

ROLE_CUSTOMER = "customer"
ROLE_ADMIN = "admin"
ROLE_SERVICE = "service"
ROLES = (ROLE_CUSTOMER, ROLE_ADMIN, ROLE_SERVICE)

ISSUER = "pointsbridge"
# Asymmetric: the services hold only the public key, so none of them can mint tokens.
ALGORITHM = "ES256"


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: a customer, an operator (admin) or a peer service."""

    subject: str
    roles: frozenset[str]
    via: str  # "token" or "certificate"

    def has(self, role: str) -> bool:
        return role in self.roles


principal_var: contextvars.ContextVar[Principal | None] = contextvars.ContextVar(
    "principal", default=None
)


def caller_has(role: str) -> bool:
    """Whether the caller of the RPC being served holds `role` (False outside an RPC)."""
    principal = principal_var.get()
    return principal is not None and principal.has(role)


class CredentialError(Exception):
    def __init__(
        self, reason: str, message: str, metadata: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.metadata = dict(metadata or {})


def generate_signing_key() -> tuple[bytes, bytes]:
    """A new ES256 key pair as PEM: (private key for the issuer, public key for the services)."""
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


class TokenIssuer:
    """Signs bearer tokens whose subject is a customer, an operator or a service."""

    def __init__(self, private_key_pem: bytes) -> None:
        self._key = serialization.load_pem_private_key(private_key_pem, password=None)

    def issue(
        self, subject: str, roles: list[str], ttl_seconds: int, now: float | None = None
    ) -> str:
        unknown = set(roles) - set(ROLES)
        if unknown or not roles:
            raise ValueError(f"roles must be some of {', '.join(ROLES)}")
        issued = int(now if now is not None else time.time())
        claims = {
            "iss": ISSUER,
            "sub": subject,
            "roles": sorted(set(roles)),
            "iat": issued,
            "exp": issued + ttl_seconds,
        }
        return jwt.encode(claims, self._key, algorithm=ALGORITHM)  # type: ignore[arg-type]


class TokenVerifier:
    """Checks a bearer token's signature, issuer, expiry and claims.

    An ES256 verification costs about 0.2 ms of CPU, more than the rest of a small RPC's
    authentication, and a caller sends the same token with every call. So the last
    `cache_size` tokens that verified are remembered, keyed by the whole token string,
    until their expiry: a remembered token is accepted again without the signature check
    as long as `exp` is still ahead (iat and nbf, once passed, stay passed), and an
    expired one is dropped and goes through the full check, which refuses it. Tokens
    that fail are never remembered.
    """

    def __init__(
        self,
        public_key_pem: bytes,
        *,
        cache_size: int = 10_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key = serialization.load_pem_public_key(public_key_pem)
        self._cache: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        self._cache_size = cache_size
        self._clock = clock

    @classmethod
    def from_file(cls, path: str) -> TokenVerifier:
        if not path:
            raise ConfigError("--token-public-key is required: every RPC needs credentials")
        try:
            return cls(Path(path).read_bytes())
        except (OSError, ValueError) as error:
            raise ConfigError(f"cannot load the token public key {path!r}: {error}") from None

    def verify(self, token: str) -> Principal:
        remembered = self._cache.get(token)
        if remembered is not None:
            principal, expires = remembered
            if expires > self._clock():
                self._cache.move_to_end(token)
                return principal
            del self._cache[token]
        principal, expires = self._verify(token)
        if self._cache_size > 0:
            self._cache[token] = (principal, expires)
            if len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return principal

    def _expired(self, token: str) -> CredentialError:
        """Says when a token that is genuine but past its expiry expired."""
        claims = jwt.decode(
            token,
            self._key,  # type: ignore[arg-type]
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            options={"verify_exp": False},
        )
        when = datetime.fromtimestamp(int(claims["exp"]), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return CredentialError(
            "INVALID_CREDENTIALS",
            f"the token expired at {when}",
            {"problem": "expired", "expire_time": when},
        )

    def _verify(self, token: str) -> tuple[Principal, float]:
        try:
            claims = jwt.decode(
                token,
                self._key,  # type: ignore[arg-type]
                algorithms=[ALGORITHM],
                issuer=ISSUER,
                options={"require": ["exp", "iat", "sub", "iss"]},
            )
        except jwt.ExpiredSignatureError:
            raise self._expired(token) from None
        except jwt.PyJWTError:
            raise CredentialError("INVALID_CREDENTIALS", "the token is not valid") from None
        roles = claims.get("roles")
        subject = claims.get("sub")
        if (
            not isinstance(roles, list)
            or not roles
            or not all(r in ROLES for r in roles)
            or not isinstance(subject, str)
            or not subject
        ):
            raise CredentialError("INVALID_CREDENTIALS", "the token's claims are not valid")
        return Principal(subject, frozenset(roles), "token"), float(claims["exp"])


@dataclass(frozen=True)
class Rule:
    """Who may call one RPC. `owner_field` names the request field that must be the caller's
    own id when the caller is a customer."""

    roles: frozenset[str]
    owner_field: str | None = None


PUBLIC = Rule(frozenset())

PUBLIC_SERVICES = ("grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection")


def admin_only() -> Rule:
    return Rule(frozenset({ROLE_ADMIN}))


def customer_owned(owner_field: str = "customer_id") -> Rule:
    return Rule(frozenset({ROLE_CUSTOMER, ROLE_ADMIN}), owner_field)


def services_only() -> Rule:
    """Only a peer service this server works for (see Authenticator's service_identities)."""
    return Rule(frozenset({ROLE_SERVICE}))


def services_or_admins() -> Rule:
    return Rule(frozenset({ROLE_SERVICE, ROLE_ADMIN}))


def customers_and_admins() -> Rule:
    return Rule(frozenset({ROLE_CUSTOMER, ROLE_ADMIN}))


def _denial_reason(rule: Rule) -> str:
    """Why a caller whose roles do not fit the rule is turned away."""
    if ROLE_SERVICE in rule.roles:
        return "NOT_SERVICE"
    # Customers are only refused for acting for someone else, which is NOT_OWNER;
    # any other caller lacked the operator (admin) role these RPCs accept.
    return "NOT_ADMIN"


@dataclass
class RateLimiter:
    """A token bucket per caller: `rate` calls a second, bursts up to `burst`.

    Limits are per replica, in memory: they protect capacity, not correctness.
    """

    rate: float
    burst: int
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)

    def allow(self, key: str) -> bool:
        now = self.clock()
        tokens, last = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens < 1:
            self._buckets[key] = (tokens, now)
            return False
        self._buckets[key] = (tokens - 1, now)
        if len(self._buckets) > 100_000:  # forget idle callers rather than grow without bound
            self._buckets.pop(next(iter(self._buckets)))
        return True


class Authenticator:
    """Authenticates every RPC but health and reflection, then applies its Rule.

    A bearer token says who the caller is. Without one, a peer that presented a
    client certificate whose common name is in `service_identities` is that
    service; anyone else is turned away. `rule_for` is asked once per method when
    the servicers are registered; `admit` once per call.
    """

    def __init__(
        self,
        tokens: TokenVerifier,
        rules: Mapping[str, Rule],
        *,
        service_identities: frozenset[str] = frozenset(),
        rate_limiter: RateLimiter | None = None,
    ) -> None:
        self._tokens = tokens
        self._rules = dict(rules)
        self._service_identities = service_identities
        self._rate_limiter = rate_limiter

    def rule_for(self, full_method: str) -> Rule | None:
        """The Rule of "/package.Service/Method", None for the credential-free services."""
        if full_method.lstrip("/").partition("/")[0] in PUBLIC_SERVICES:
            return None
        # An RPC without a rule is refused: forgetting one must fail closed.
        return self._rules.get(full_method, Rule(frozenset({ROLE_ADMIN})))

    def _principal(self, metadata: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Principal:
        values = [v for k, v in metadata or () if k == "authorization"]
        if not values:
            # No token: a client certificate of a known service is an identity of its own.
            names = [n.decode() for n in context.auth_context().get("x509_common_name", [])]
            for name in names:
                if name in self._service_identities:
                    return Principal(name, frozenset({ROLE_SERVICE}), "certificate")
            raise CredentialError("MISSING_CREDENTIALS", "send authorization: Bearer <token>")
        scheme, _, token = str(values[0]).partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise CredentialError("INVALID_CREDENTIALS", "expected authorization: Bearer <token>")
        return self._tokens.verify(token.strip())

    async def admit(
        self,
        full_method: str,
        rule: Rule,
        request: Any,
        metadata: Any,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> Principal:
        """The caller of `full_method` if `rule` lets them in; else the call is aborted."""
        try:
            principal = self._principal(metadata, context)
        except CredentialError as error:
            await context.abort_with_status(refusal(error.reason, error.message, error.metadata))
            raise AssertionError("unreachable") from None
        matched = principal.roles & rule.roles
        # Let in as a service only a service this server works for.
        allowed = bool(matched) and (
            matched != {ROLE_SERVICE} or principal.subject in self._service_identities
        )
        if rule.roles and not allowed:
            await context.abort_with_status(
                refusal(
                    _denial_reason(rule),
                    f"{full_method} is not open to {principal.subject!r}",
                    # Who may call it, so that the refusal can say so.
                    {"allowed_roles": ",".join(sorted(rule.roles))},
                )
            )
        if (
            rule.owner_field
            and not isinstance(request, Undecodable)  # refused as bad input by @rpc
            and not principal.has(ROLE_ADMIN)
            and getattr(request, rule.owner_field) != principal.subject
        ):
            await context.abort_with_status(
                refusal(
                    "NOT_OWNER",
                    f"{rule.owner_field} must be the caller's own",
                    {"field": rule.owner_field},
                )
            )
        limiter = self._rate_limiter
        if (
            limiter is not None
            and principal.roles == {ROLE_CUSTOMER}
            and not limiter.allow(principal.subject)
        ):
            await context.abort_with_status(
                refusal("RATE_LIMITED", "too many requests; slow down and retry")
            )
        return principal

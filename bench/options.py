"""The options of `python -m bench`: its arguments, parsed once into a frozen Options."""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.stack import DEFAULT_PG_URL, ROOT
from bench.verdicts import TARGETS_AT
from servicekit.devtools.databases import require_local_server

SECTIONS = ("limits", "sqlite", "profile", "growth", "soak", "postgres")


@dataclass(frozen=True)
class Options:
    smoke: bool
    sections: tuple[str, ...]
    concurrency: tuple[int, ...]
    warmup: float
    duration: float
    clients: int
    accounts: int
    growth_accounts: int
    growth_coupons: int
    soak_redemptions: int
    profile_seconds: float
    pg_url: str
    out: Path
    docs: bool
    server_args: tuple[str, ...]
    repeats: int = 1
    events: bool = True
    targets: bool = False
    # > 0: a window is this many calls (at least one per call in flight), however long
    # they take up to `window_limit_s`, instead of `duration` seconds. The smoke's: on a
    # loaded machine a fraction of a second can complete no call at all.
    window_calls: int = 0
    window_limit_s: float = 3600.0


def parse_options(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="PointsBridge against empty gRPC baselines (see docs/PERFORMANCE.md).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--smoke", action="store_true", help="a few seconds: SQLite, windows of a few calls each"
    )
    parser.add_argument(
        "--targets",
        action="store_true",
        help="only the target rows: SQLite and PostgreSQL at 64 in flight, --repeats pairs",
    )
    parser.add_argument(
        "--events",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the services' event relays publish to a private nats-server (off in --smoke)",
    )
    parser.add_argument(
        "--sections",
        default=",".join(SECTIONS),
        help=f"comma-separated, of: {', '.join(SECTIONS)} (the baselines always run)",
    )
    parser.add_argument("--concurrency", default="1,16,64,256", help="calls in flight")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds before each window")
    parser.add_argument("--duration", type=float, default=4.0, help="seconds of each window")
    parser.add_argument("--clients", type=int, default=2, help="load generator processes")
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="pairs (baseline, then service) measured at 64 in flight; targets use the median",
    )
    parser.add_argument("--accounts", type=int, default=10_000, help="card accounts seeded")
    parser.add_argument("--growth-accounts", type=int, default=1_000_000)
    parser.add_argument("--growth-coupons", type=int, default=2_000_000)
    parser.add_argument("--soak-redemptions", type=int, default=100_000)
    parser.add_argument("--profile-seconds", type=float, default=8.0)
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL, help="PostgreSQL to create DBs on")
    parser.add_argument("--out", default="", help="JSON result (default bench/results/<time>.json)")
    parser.add_argument(
        "--docs",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="write docs/PERFORMANCE.md and docs/performance.json (default: on, off in --smoke)",
    )
    parser.add_argument(
        "--server-arg",
        action="append",
        default=[],
        help="an extra flag for both services (repeatable), e.g. --server-arg=--workers=4",
    )
    args = parser.parse_args(argv)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = Path(args.out) if args.out else ROOT / "bench" / "results" / f"{stamp}.json"
    sections = tuple(s for s in args.sections.split(",") if s)
    if args.targets:
        sections = tuple(s for s in sections if s in ("sqlite", "postgres"))
        args.concurrency = str(TARGETS_AT)
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections: {', '.join(sorted(unknown))}")
    try:
        require_local_server(args.pg_url)
    except ValueError as error:
        parser.error(f"--pg-url: {error}")
    if args.smoke:
        return Options(
            smoke=True,
            sections=("sqlite",),
            concurrency=(1, 4),
            warmup=0.1,
            duration=0.4,
            clients=2,
            accounts=200,
            growth_accounts=0,
            growth_coupons=0,
            soak_redemptions=0,
            profile_seconds=0,
            pg_url=args.pg_url,
            out=out,
            docs=bool(args.docs),
            server_args=tuple(args.server_arg),
            events=False,  # a few seconds: no broker to start beside the servers
            window_calls=16,
            window_limit_s=30.0,
        )
    return Options(
        smoke=False,
        sections=sections,
        concurrency=tuple(int(c) for c in args.concurrency.split(",")),
        warmup=args.warmup,
        duration=args.duration,
        clients=args.clients,
        accounts=args.accounts,
        growth_accounts=args.growth_accounts,
        growth_coupons=args.growth_coupons,
        soak_redemptions=args.soak_redemptions,
        profile_seconds=args.profile_seconds,
        pg_url=args.pg_url,
        out=out,
        docs=args.docs if args.docs is not None else True,
        server_args=tuple(args.server_arg),
        repeats=max(1, args.repeats),
        events=args.events,
        targets=args.targets,
    )

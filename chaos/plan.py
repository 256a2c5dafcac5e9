"""What a harness run will do, drawn before anything starts: its options and the plan
(customers, products, client seeds, kill and fault schedules) that its seed gives."""

from __future__ import annotations

import argparse
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from chaos.journal import Customer, Product
from chaos.proxy import Mode
from servicekit.devtools.databases import PG_URL as DEFAULT_PG_URL
from servicekit.devtools.databases import require_local_server

CARDPOINTS = "cardpoints"
ECOMMERCE = "ecommerce"


@dataclass(frozen=True)
class Preset:
    duration: float
    clients: int
    kills: int


PRESETS = {
    # `make test`: 15 s of load, so about 25 s per database on a 2-core machine, plus a
    # few seconds of waiting when a kill strands recovery claims (the default
    # --recovery-lease, which the harness leaves as an operator would).
    "short": Preset(duration=15.0, clients=4, kills=2),
    # `make chaos`: minutes, 10 kills of each service (20 in all) per database.
    "long": Preset(duration=150.0, clients=6, kills=10),
}


@dataclass(frozen=True)
class Options:
    db: str
    pg_url: str
    seed: int
    duration: float
    clients: int
    kills: int
    workdir: Path | None
    proxy: bool
    self_test: bool
    keep: bool
    # The relay on against a private nats-server, the broker killed once, and I8 checked.
    events: bool = True


@dataclass(frozen=True)
class Kill:
    at: float  # seconds after the clients start
    service: str
    downtime: float  # seconds between the SIGKILL and the restart


@dataclass(frozen=True)
class Fault:
    at: float
    mode: Mode
    length: float


@dataclass(frozen=True)
class Plan:
    """Everything random about a run, drawn from the seed before anything starts."""

    customers: tuple[Customer, ...]
    products: tuple[Product, ...]
    client_seeds: tuple[int, ...]
    kills: tuple[Kill, ...]
    faults: tuple[Fault, ...]

    @classmethod
    def draw(cls, options: Options) -> Plan:
        rng = random.Random(options.seed)
        # One poor account, soon refused (INSUFFICIENT_POINTS); the others hold enough
        # for most of the run's redemptions, more the longer it runs.
        customers = [Customer("chaos-cust-0", "chaos-card-0", 1_500)]
        scale = max(1, round(options.duration / 20))
        for i in range(1, options.clients + 1):
            points = rng.randint(150, 400) * 1000 * scale
            customers.append(Customer(f"chaos-cust-{i}", f"chaos-card-{i}", points))
        products = (
            Product("chaos-small", rng.choice((100, 150, 200)), 5),
            Product("chaos-medium", rng.choice((500, 800, 1000)), 4),
            Product("chaos-large", rng.choice((2000, 3000, 5000)), 3),
        )
        client_seeds = tuple(rng.getrandbits(64) for _ in range(options.clients))
        services = [CARDPOINTS, ECOMMERCE] * options.kills
        rng.shuffle(services)
        start, span = 0.08 * options.duration, 0.8 * options.duration
        slot = span / max(len(services), 1)
        kills = tuple(
            Kill(start + i * slot + rng.uniform(0, slot / 2), service, rng.uniform(0.0, 1.0))
            for i, service in enumerate(services)
        )
        faults: list[Fault] = []
        if options.proxy:
            count = max(3, int(options.duration // 6))
            fault_slot = options.duration * 0.85 / count
            for i in range(count):
                mode = rng.choice((Mode.CUT, Mode.STALL))
                length = rng.uniform(0.3, 1.5) if mode is Mode.CUT else rng.uniform(0.5, 3.0)
                faults.append(Fault(i * fault_slot + rng.uniform(0, fault_slot / 2), mode, length))
        return cls(tuple(customers), products, client_seeds, kills, tuple(faults))


def parse_options(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m chaos.harness",
        description=(
            "Run cardpoints and ecommerce as real processes, drive concurrent clients "
            "while SIGKILLing and restarting both, then check invariants I1-I6 across "
            "both databases and require a clean `pointsbridge reconcile`. Prints one "
            "summary line; exits 0 only if nothing was violated, 1 on a violation, 2 if "
            "the harness itself failed."
        ),
    )
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="short",
        help="duration/clients/kills: short (make test) or long (make chaos); "
        "explicit options win (default: short)",
    )
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument(
        "--pg-url",
        default=DEFAULT_PG_URL,
        help="PostgreSQL server for --db postgres; two fresh databases are created on it "
        f"and dropped afterwards (default: {DEFAULT_PG_URL})",
    )
    parser.add_argument("--seed", type=int, default=7, help="all randomness (default: 7)")
    parser.add_argument("--duration", type=float, help="seconds of client load")
    parser.add_argument("--clients", type=int, help="concurrent clients")
    parser.add_argument("--kills", type=int, help="minimum SIGKILLs of EACH service")
    parser.add_argument(
        "--workdir",
        type=Path,
        help="logs and SQLite files (default: a temporary directory, removed after a clean run)",
    )
    parser.add_argument(
        "--no-proxy",
        dest="proxy",
        action="store_false",
        help="connect ecommerce straight to cardpoints: no lost or delayed responses",
    )
    parser.add_argument(
        "--self-test",
        action="store_true",
        help="after the run, inject a bogus deduction and delete a coupon row, check again, "
        "and show that the checker reports both (the run then exits 1)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument(
        "--no-events",
        dest="events",
        action="store_false",
        help="no broker: the relays stay off and I8 (events) is not checked",
    )
    args = parser.parse_args(argv)
    preset = PRESETS[args.preset]
    options = Options(
        db=args.db,
        pg_url=args.pg_url,
        seed=args.seed,
        duration=args.duration if args.duration is not None else preset.duration,
        clients=args.clients if args.clients is not None else preset.clients,
        kills=args.kills if args.kills is not None else preset.kills,
        workdir=args.workdir,
        proxy=args.proxy,
        self_test=args.self_test,
        keep=args.keep,
        events=args.events,
    )
    if options.duration <= 0 or options.clients < 1 or options.kills < 0:
        parser.error("--duration must be positive, --clients at least 1, --kills at least 0")
    try:
        require_local_server(options.pg_url)
    except ValueError as error:
        parser.error(f"--pg-url: {error}")
    return options

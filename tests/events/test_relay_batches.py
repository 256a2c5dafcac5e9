"""The relay publishes a batch per round trip: waves, order and exactly-once under failures.

The ordering tests run the relay against a fake JetStream that refuses, loses or
stores-without-answering chosen events, and checks on every publish that each earlier
event of the same aggregate is already stored. One test refuses an event with a real
broker (a stream whose size limit one event exceeds).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import nats
import nats.errors
import nats.js.errors
import pytest
from nats.aio.msg import Msg
from nats.js.api import StorageType, StreamConfig

import servicekit.relay
from cardpoints.adapters.orm import OUTBOX
from cardpoints.domain.model import CreditPoints, OpenAccount
from cardpoints.entrypoints.server import MIGRATIONS, VERSION_TABLE
from cardpoints.service_layer import services
from servicekit.clock import utc_now
from servicekit.db import Database, create_db_engine, upgrade_schema
from servicekit.outbox import now_micros
from servicekit.relay import FAILED, PUBLISHED, Relay, RelaySettings, waves
from servicekit.streams import DUPLICATE_WINDOW, STREAMS, headers, parse_ack
from tests.broker import NatsServer, ce, stream_messages
from tests.events.relay import check_consumer_view, eventually, outbox_ids, unsent, uow


@dataclass(frozen=True)
class Row:
    id: int
    subject: str
    aggregate_id: str


def test_waves_are_runs_with_at_most_one_event_of_each_aggregate() -> None:
    opened = "pointsbridge.cardpoints.account.account_opened"
    credited = "pointsbridge.cardpoints.account.points_credited"
    product = "pointsbridge.ecommerce.product.changed"
    rows = [
        Row(1, opened, "a"),
        Row(2, opened, "b"),
        Row(3, credited, "a"),  # a again: a new wave
        Row(4, product, "a"),  # another aggregate type with the same id
        Row(5, credited, "c"),
        Row(6, credited, "c"),
        Row(7, opened, "d"),
    ]
    assert [[r.id for r in wave] for wave in waves(rows)] == [[1, 2], [3, 4, 5], [6, 7]]
    assert waves([]) == []
    assert [r.id for wave in waves(rows) for r in wave] == [r.id for r in rows]


@dataclass
class FakeStream:
    """A JetStream that stores on receipt, answers out of turn, fails on demand, and checks.

    `refuse` (answered with a 400), `lose` (never stored, never answered) and `mute`
    (stored, the answer lost) name event ids, each failing once; `down_after` makes
    every publish after that many raise, as a connection to a broker that just died does.
    """

    refuse: set[str] = field(default_factory=set)
    lose: set[str] = field(default_factory=set)
    mute: set[str] = field(default_factory=set)
    down_after: int | None = None
    stored: list[tuple[str, str, int]] = field(default_factory=list)  # aggregate, id, sequence
    published: int = 0
    most_in_flight: int = 0
    _in_flight: dict[asyncio.Future[bool], str] = field(default_factory=dict)

    async def send(
        self, subject: str, payload: bytes, headers: dict[str, str]
    ) -> asyncio.Future[bool]:
        if self.down_after is not None and self.published >= self.down_after:
            raise nats.errors.ConnectionClosedError
        self.published += 1
        event_id = headers["Nats-Msg-Id"]
        assert headers["ce-id"] == event_id
        assert headers["Nats-Expected-Stream"] == STREAMS["cardpoints"].name
        aggregate = f"{subject.rpartition('.')[0]}/{headers['ce-subject']}"
        sequence = int(headers["ce-sequence"])
        # The heart of it: an event goes out only once every earlier one of its aggregate
        # is stored and none is still unanswered, so no failure can put a later one in
        # the stream before it.
        assert aggregate not in self._in_flight.values(), (aggregate, sequence)
        stored = {s for a, _, s in self.stored if a == aggregate}
        assert set(range(1, sequence)) <= stored, (aggregate, sequence, stored)
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._in_flight[future] = aggregate
        self.most_in_flight = max(self.most_in_flight, len(self._in_flight))
        outcome: bool | BaseException | None
        if event_id in self.refuse:
            self.refuse.discard(event_id)
            outcome = nats.js.errors.BadRequestError(description="refused")
        elif event_id in self.lose:
            self.lose.discard(event_id)
            outcome = None
        else:
            duplicate = any(i == event_id for _, i, _ in self.stored)
            if not duplicate:
                self.stored.append((aggregate, event_id, sequence))
            outcome = duplicate
            if event_id in self.mute:
                self.mute.discard(event_id)
                outcome = None

        def answer() -> None:
            if future.done():
                return
            del self._in_flight[future]
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(bool(outcome))

        if outcome is not None:  # answered out of turn
            asyncio.get_running_loop().call_later(0.001 * (self.published % 3), answer)
        return future

    def abandon(self) -> None:
        for future in self._in_flight:
            future.cancel()
        self._in_flight.clear()


@pytest.fixture
def short_timeout(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(servicekit.relay, "PUBLISH_TIMEOUT", 0.2)
    yield


async def _seed(db: Database, accounts: list[str]) -> None:
    """Open every account, then credit each one twice: three events per account."""
    for account in accounts:
        await db.write(
            partial(services.open_account, uow(db), OpenAccount(account, "Ada"), utc_now)
        )
    for n in range(2):
        for account in accounts:
            credit = CreditPoints(f"credit-{n}-{account}", account, 5, "welcome")
            await db.write(partial(services.credit_points, uow(db), credit, utc_now))


async def _relay_with(fake: FakeStream, url: str, batch: int = 200) -> tuple[Relay, Database]:
    engine = create_db_engine(url)
    upgrade_schema(engine, MIGRATIONS, VERSION_TABLE)
    db = Database(engine, workers=2)
    relay = Relay("cardpoints", db, OUTBOX, RelaySettings(nats_url="nats://unused", batch=batch))

    async def jetstream() -> Any:
        return fake

    relay._jetstream = jetstream  # type: ignore[method-assign]
    return relay, db


async def _rounds(relay: Relay, until: Callable[[], bool], limit: int = 20) -> int:
    """Run rounds, as `run` does, until `until()`; the number of rounds that failed."""
    failed = 0
    for _ in range(limit):
        try:
            await relay._round()
        except Exception:
            failed += 1
        if until():
            return failed
    raise AssertionError("the relay did not drain the outbox")


def _check_stream(fake: FakeStream, url: str) -> None:
    ids = [i for _, i, _ in fake.stored]
    assert sorted(ids) == sorted(outbox_ids(url))  # each event exactly once
    by_aggregate: dict[str, list[int]] = {}
    for aggregate, _, sequence in fake.stored:
        by_aggregate.setdefault(aggregate, []).append(sequence)
    assert all(s == list(range(1, len(s) + 1)) for s in by_aggregate.values()), by_aggregate


async def test_a_clean_batch_goes_out_in_waves_in_commit_order(
    make_db_url: Callable[[str], str],
) -> None:
    url = make_db_url("cardpoints")
    fake = FakeStream()
    relay, db = await _relay_with(fake, url)
    try:
        await _seed(db, ["a", "b", "c", "d"])
        assert await relay._round() is False  # 12 rows: less than a batch
        assert [i for _, i, _ in fake.stored] == outbox_ids(url)  # commit order
        assert unsent(url) == 0
        assert fake.most_in_flight == 4  # one wave per round of credits, one per aggregate
        _check_stream(fake, url)
    finally:
        db.close()


async def test_a_refused_event_holds_back_only_what_follows_it(
    make_db_url: Callable[[str], str],
) -> None:
    url = make_db_url("cardpoints")
    fake = FakeStream()
    relay, db = await _relay_with(fake, url)
    try:
        await _seed(db, ["a", "b", "c"])
        ids = outbox_ids(url)  # a1 b1 c1 a2 b2 c2 a3 b3 c3
        fake.refuse = {ids[1]}  # b's account_opened, in the first wave
        first_copies = PUBLISHED.labels("cardpoints", "false")._value.get()
        with pytest.raises(nats.js.errors.BadRequestError):
            await relay._round()
        # Everything but b went out and was marked sent; b's later events waited.
        assert [i for _, i, _ in fake.stored] == [ids[n] for n in (0, 2, 3, 5, 6, 8)]
        assert unsent(url) == 3
        assert PUBLISHED.labels("cardpoints", "false")._value.get() - first_copies == 6
        await _rounds(relay, lambda: unsent(url) == 0)
        assert [i for _, i, _ in fake.stored][6:] == [ids[1], ids[4], ids[7]]
        _check_stream(fake, url)
    finally:
        db.close()


async def test_lost_and_unanswered_publishes_are_repeated_and_dropped_as_repeats(
    make_db_url: Callable[[str], str], short_timeout: None
) -> None:
    url = make_db_url("cardpoints")
    fake = FakeStream()
    relay, db = await _relay_with(fake, url)
    try:
        await _seed(db, ["a", "b", "c"])
        ids = outbox_ids(url)
        fake.lose = {ids[0], ids[5]}  # never reached the stream
        fake.mute = {ids[1], ids[4], ids[8]}  # stored, but the acknowledgement was lost
        repeats = PUBLISHED.labels("cardpoints", "true")._value.get()
        failed = await _rounds(relay, lambda: unsent(url) == 0)
        assert failed >= 2
        assert PUBLISHED.labels("cardpoints", "true")._value.get() - repeats == 3
        _check_stream(fake, url)
    finally:
        db.close()


async def test_a_broker_gone_mid_batch_marks_sent_only_what_wasparse_ack(
    make_db_url: Callable[[str], str], short_timeout: None
) -> None:
    url = make_db_url("cardpoints")
    fake = FakeStream(down_after=5)
    relay, db = await _relay_with(fake, url)
    try:
        await _seed(db, ["a", "b", "c"])
        ids = outbox_ids(url)
        fake.lose = {ids[3]}  # the wave in flight when it died: one lost, one answered
        with pytest.raises(nats.errors.ConnectionClosedError):
            await relay._round()
        # The first wave, and of the second what reached the stream before it died
        assert [i for _, i, _ in fake.stored] == [*ids[:3], ids[4]]
        assert unsent(url) == 6
        fake.down_after = None  # back
        await _rounds(relay, lambda: unsent(url) == 0)
        _check_stream(fake, url)
    finally:
        db.close()


async def test_no_wave_starts_too_close_to_the_end_of_the_lease(
    make_db_url: Callable[[str], str],
) -> None:
    url = make_db_url("cardpoints")
    fake = FakeStream()
    relay, db = await _relay_with(fake, url)
    try:
        await _seed(db, ["a"])
        rows = await db.run(relay._read_unsent)
        sent: list[int] = []
        margin = int(servicekit.relay.PUBLISH_TIMEOUT * 1_000_000)
        relay._lease_until_us = now_micros() + margin - 100_000
        await relay._publish(fake, rows, sent)  # type: ignore[arg-type]
        assert (sent, fake.published) == ([], 0)
        relay._lease_until_us = now_micros() + margin + 1_000_000
        await relay._publish(fake, rows, sent)  # type: ignore[arg-type]
        assert len(sent) == fake.published == 3
    finally:
        db.close()


def _size(row: Any) -> int:
    """What the stream counts against its largest message size: data and headers."""
    attributes = headers(row, "/pointsbridge/cardpoints", STREAMS["cardpoints"].name)
    return len(row.data) + sum(len(k) + len(v) + 4 for k, v in attributes.items()) + 12


async def test_the_real_stream_refusing_one_event_of_a_batch_keeps_every_aggregate_in_order(
    make_db_url: Callable[[str], str], nats_server: NatsServer
) -> None:
    url = make_db_url("cardpoints")
    engine = create_db_engine(url)
    upgrade_schema(engine, MIGRATIONS, VERSION_TABLE)
    db = Database(engine, workers=2)
    accounts = ["s-1", "s-2", "s-3"]
    nc = await nats.connect(nats_server.url)
    try:
        for account in accounts:
            opened = OpenAccount(account, "Ada")
            await db.write(partial(services.open_account, uow(db), opened, utc_now))
        for n, reason in enumerate(("x" * 200, "welcome")):
            for account in accounts:
                # s-2's first credit carries a long reason: the one event the stream refuses
                credit = CreditPoints(
                    f"credit-{n}-{account}", account, 5, reason if account == "s-2" else "welcome"
                )
                await db.write(partial(services.credit_points, uow(db), credit, utc_now))
        relay = Relay("cardpoints", db, OUTBOX, RelaySettings(nats_url=nats_server.url))
        rows = await db.run(relay._read_unsent)
        large = rows[4]
        assert (
            large.aggregate_id == "s-2"
            and _size(large) > max(_size(r) for r in rows if r is not large) + 150
        )
        spec = STREAMS["cardpoints"]
        config = StreamConfig(
            name=spec.name,
            subjects=[spec.subjects],
            storage=StorageType.FILE,
            duplicate_window=DUPLICATE_WINDOW,
            max_msg_size=_size(large) - 75,
        )
        js = nc.jetstream()
        await js.add_stream(config)
        failures = FAILED.labels("cardpoints")._value.get()
        stop = asyncio.Event()
        task = asyncio.create_task(relay.run(stop))
        try:

            async def held_back() -> bool:
                return bool(await asyncio.to_thread(unsent, url) == 2)

            await eventually(held_back, "all but s-2's last two events marked sent")
            assert FAILED.labels("cardpoints")._value.get() > failures
            messages = await stream_messages(nats_server.url, "cardpoints", expect=7)
            assert [ce(m)["id"] for m in messages] == [
                r.event_id for r in rows if r.id not in {rows[4].id, rows[7].id}
            ]
            config.max_msg_size = -1
            await js.update_stream(config)

            async def drained() -> bool:
                return bool(await asyncio.to_thread(unsent, url) == 0)

            await eventually(drained, "s-2's events published once the stream takes them")
        finally:
            stop.set()
            await task
        messages = await stream_messages(nats_server.url, "cardpoints", expect=9)
        sequences = check_consumer_view(messages, outbox_ids(url))
        assert sequences == {f"account/{account}": [1, 2, 3] for account in accounts}
    finally:
        await nc.close()
        db.close()


@pytest.mark.parametrize(
    ("data", "status", "outcome"),
    [
        (b'{"stream":"S","seq":7}', None, False),
        (b'{"stream":"S","seq":7,"duplicate":true}', None, True),
        (b'{"error":{"code":400,"err_code":10054,"description":"too big"}}', None, "400"),
        (b'{"error":{"code":503,"description":"no JetStream"}}', None, "503"),
        (b"", "503", "no stream"),
        (b"not json", None, "unreadable"),
        (b'{"stream":"S"}', None, "without a sequence"),
    ],
)
def test_the_stream_answer_is_an_acknowledgement_or_an_error(
    data: bytes, status: str | None, outcome: bool | str
) -> None:
    msg = Msg(_client=None, subject="_INBOX.x.1", data=data)  # type: ignore[arg-type]
    if status is not None:
        msg.headers = {"Status": status}
    if isinstance(outcome, bool):
        assert parse_ack(msg) is outcome
        return
    with pytest.raises(nats.errors.Error) as raised:
        parse_ack(msg)
    if outcome == "400":
        assert isinstance(raised.value, nats.js.errors.BadRequestError)
    elif outcome == "503":
        assert isinstance(raised.value, nats.js.errors.ServiceUnavailableError)
    elif outcome == "no stream":
        assert isinstance(raised.value, nats.js.errors.NoStreamResponseError)
    else:
        assert outcome in str(raised.value)

"""Fixtures of the security tests: the seeded stack hostile input goes to, and a pair of servers."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

import grpc
import pytest
import pytest_asyncio

from cardpoints.entrypoints.server import Settings as CardpointsSettings
from cardpoints.entrypoints.server import start as start_cardpoints
from ecommerce.entrypoints.server import Settings as EcommerceSettings
from ecommerce.entrypoints.server import start as start_ecommerce
from pointsbridge.cardpoints.v1 import cardpoints_pb2 as cp
from pointsbridge.cardpoints.v1 import cardpoints_pb2_grpc as cp_grpc
from pointsbridge.ecommerce.v1 import ecommerce_pb2 as ec
from pointsbridge.ecommerce.v1 import ecommerce_pb2_grpc as ec_grpc
from servicekit.devtools.databases import drop_database
from servicekit.paging import encode_token
from tests.auth import Callers
from tests.conftest import BACKENDS, create_pg_database
from tests.security.access import Pair
from tests.security.hostile import LOOPBACK, TIMEOUT, Books, Known, Stack


async def _seed(cardpoints: str, ecommerce: str, auth: Callers) -> Known:
    """An active and a frozen card, a product, two linked customers and one redemption."""
    async with auth.channel(cardpoints) as bank, auth.channel(ecommerce) as shop:
        bank_admin = cp_grpc.CardPointsAdminServiceStub(bank)
        shop_admin = ec_grpc.EcommerceAdminServiceStub(shop)
        for account, customer in (("card-seed", "seed-customer"), ("card-frozen", "frozen")):
            await bank_admin.OpenAccount(
                cp.OpenAccountRequest(account_id=account, holder_name="Seed Holder"),
                timeout=TIMEOUT,
            )
            await bank_admin.CreditPoints(
                cp.CreditPointsRequest(
                    request_id=f"seed-{account}", account_id=account, points=1_000_000
                ),
                timeout=TIMEOUT,
            )
            await shop_admin.LinkCardAccount(
                ec.LinkCardAccountRequest(customer_id=customer, card_account_id=account),
                timeout=TIMEOUT,
            )
        await bank_admin.SetAccountState(
            cp.SetAccountStateRequest(account_id="card-frozen", state=cp.ACCOUNT_STATE_FROZEN),
            timeout=TIMEOUT,
        )
        await shop_admin.CreateCouponProduct(
            ec.CreateCouponProductRequest(
                product_id="seed-product",
                display_name="10 off",
                face_value_minor=1000,
                currency="CNY",
                points_per_coupon=100,
                validity_days=30,
                max_quantity_per_redemption=50,
            ),
            timeout=TIMEOUT,
        )
        redemption = (
            await ec_grpc.RedemptionServiceStub(shop).RedeemPoints(
                ec.RedeemPointsRequest(
                    request_id="seed-redeem",
                    customer_id="seed-customer",
                    product_id="seed-product",
                    quantity=3,
                ),
                timeout=TIMEOUT,
            )
        ).redemption
    rid, codes = redemption.redemption_id, [c.code for c in redemption.coupons]
    return Known(
        {
            "account_id": ("card-seed", "card-frozen"),
            "card_account_id": ("card-seed", "card-frozen"),
            "holder_name": ("Seed Holder",),
            "customer_id": ("seed-customer", "frozen"),
            "product_id": ("seed-product",),
            "redemption_id": (rid,),
            "deduction_id": (redemption.deduction_id,),
            "deduction_request_id": (f"redemption:{rid}",),
            "request_id": ("seed-redeem", f"redemption:{rid}", "seed-card-seed"),
            "code": (*codes, codes[0].lower().replace("-", "")),
            "codes": tuple(codes),
            "merchant_id": ("ecommerce",),
            "currency": ("CNY",),
            "order_id": ("order-1",),
            "page_token": (encode_token(1), encode_token(2**63 - 1)),
        }
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=BACKENDS)
async def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, auth: Callers
) -> AsyncIterator[Stack]:
    backend = str(request.param)
    created: list[str] = []

    def new_url(name: str) -> str:
        if backend == "sqlite":
            return f"sqlite:///{tmp_path_factory.mktemp('hostile') / name}.db"
        url = create_pg_database()
        created.append(url)
        return url

    def drop_databases() -> None:
        for url in created:
            drop_database(url)

    async with contextlib.AsyncExitStack() as cleanup:
        cleanup.callback(drop_databases)  # last, once everything else has let go
        urls = {"cardpoints": new_url("cardpoints"), "ecommerce": new_url("ecommerce")}
        cardpoints = await start_cardpoints(
            CardpointsSettings(
                **auth.server_security,
                address=f"{LOOPBACK}:0",
                database_url=urls["cardpoints"],
                workers=4,
            )
        )
        cleanup.push_async_callback(cardpoints.stop, 1)
        ecommerce = await start_ecommerce(
            EcommerceSettings(
                **auth.ecommerce_security,
                address=f"{LOOPBACK}:0",
                database_url=urls["ecommerce"],
                cardpoints_address=f"{LOOPBACK}:{cardpoints.port}",
                recovery_interval=0,  # nothing may write behind the snapshots' back
                workers=4,
            )
        )
        cleanup.push_async_callback(ecommerce.stop, 1)
        addresses = {
            "cardpoints": f"{LOOPBACK}:{cardpoints.port}",
            "ecommerce": f"{LOOPBACK}:{ecommerce.port}",
        }
        channels = {name: grpc.insecure_channel(address) for name, address in addresses.items()}
        for channel in channels.values():
            cleanup.callback(channel.close)
        books = Books(urls)
        cleanup.callback(books.close)
        known = await _seed(addresses["cardpoints"], addresses["ecommerce"], auth=auth)
        yield Stack(backend, channels, books, known, auth.superuser)


@pytest.fixture
async def pair(make_db_url: Callable[[str], str], auth: Callers) -> AsyncIterator[Pair]:
    cardpoints_url, ecommerce_url = make_db_url("cardpoints"), make_db_url("ecommerce")
    cardpoints = await start_cardpoints(
        CardpointsSettings(
            **auth.server_security, address="127.0.0.1:0", database_url=cardpoints_url
        )
    )
    ecommerce = await start_ecommerce(
        EcommerceSettings(
            **auth.ecommerce_security,
            address="127.0.0.1:0",
            database_url=ecommerce_url,
            cardpoints_address=f"127.0.0.1:{cardpoints.port}",
            recovery_interval=0,
        )
    )
    try:
        yield Pair(
            f"127.0.0.1:{cardpoints.port}",
            f"127.0.0.1:{ecommerce.port}",
            (cardpoints_url, ecommerce_url),
        )
    finally:
        await ecommerce.stop(1)
        await cardpoints.stop(1)

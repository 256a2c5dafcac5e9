"""The whole system for storefront tests: cardpoints, ecommerce and the storefront, on port 0."""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from cardpoints.entrypoints.server import App as CardpointsApp
from cardpoints.entrypoints.server import Settings as CardpointsSettings
from cardpoints.entrypoints.server import start as start_cardpoints
from ecommerce.entrypoints.server import App as EcommerceApp
from ecommerce.entrypoints.server import Settings as EcommerceSettings
from ecommerce.entrypoints.server import start as start_ecommerce
from pointsbridge.cardpoints.v1 import cardpoints_pb2 as cpb
from pointsbridge.cardpoints.v1 import cardpoints_pb2_grpc as cpb_grpc
from pointsbridge.ecommerce.v1 import ecommerce_pb2 as pb
from pointsbridge.ecommerce.v1 import ecommerce_pb2_grpc as pb_grpc
from storefront.entrypoints.server import RunningStorefront
from storefront.entrypoints.server import start as start_storefront
from storefront.entrypoints.settings import Settings as StorefrontSettings
from tests.auth import Callers

TIMEOUT = 10.0


@dataclass
class Stack:
    """Real servers on SQLite, and operator channels to set up customers and products."""

    folder: Path
    cardpoints: CardpointsApp
    ecommerce: EcommerceApp
    storefront: RunningStorefront
    cardpoints_port: int
    to_bank: grpc.aio.Channel
    to_shop: grpc.aio.Channel
    auth: Callers
    ecommerce_overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return self.storefront.url

    @property
    def bank(self) -> cpb_grpc.CardPointsAdminServiceAsyncStub:
        return cpb_grpc.CardPointsAdminServiceStub(self.to_bank)

    @property
    def bank_reader(self) -> cpb_grpc.CardPointsServiceAsyncStub:
        return cpb_grpc.CardPointsServiceStub(self.to_bank)

    @property
    def admin(self) -> pb_grpc.EcommerceAdminServiceAsyncStub:
        return pb_grpc.EcommerceAdminServiceStub(self.to_shop)

    @property
    def shop(self) -> pb_grpc.RedemptionServiceAsyncStub:
        return pb_grpc.RedemptionServiceStub(self.to_shop)

    async def customer(self, points: int, *, linked: bool = True) -> tuple[str, str]:
        """A new customer with a card holding `points`: (customer id, bearer token)."""
        customer_id = f"cust-{secrets.token_hex(4)}"
        if linked:
            card = f"card-{customer_id}"
            await self.bank.OpenAccount(
                cpb.OpenAccountRequest(account_id=card, holder_name=customer_id), timeout=TIMEOUT
            )
            await self.bank.CreditPoints(
                cpb.CreditPointsRequest(
                    request_id=f"seed-{customer_id}", account_id=card, points=points
                ),
                timeout=TIMEOUT,
            )
            await self.admin.LinkCardAccount(
                pb.LinkCardAccountRequest(customer_id=customer_id, card_account_id=card),
                timeout=TIMEOUT,
            )
        return customer_id, self.auth.token(customer_id, "customer")

    async def balance(self, customer_id: str) -> int:
        account = await self.bank_reader.GetAccount(
            cpb.GetAccountRequest(account_id=f"card-{customer_id}"), timeout=TIMEOUT
        )
        return int(account.account.balance)

    async def product(
        self,
        *,
        name: str = "10 CNY e-coupon",
        face_value_minor: int = 1000,
        points_per_coupon: int = 1000,
        max_quantity: int = 20,
        product_id: str = "",
    ) -> str:
        product_id = product_id or f"p-{secrets.token_hex(4)}"
        await self.admin.CreateCouponProduct(
            pb.CreateCouponProductRequest(
                product_id=product_id,
                display_name=name,
                face_value_minor=face_value_minor,
                currency="CNY",
                points_per_coupon=points_per_coupon,
                validity_days=30,
                max_quantity_per_redemption=max_quantity,
            ),
            timeout=TIMEOUT,
        )
        return product_id

    async def redemptions(self, customer_id: str) -> list[pb.Redemption]:
        listing = await self.shop.ListRedemptions(
            pb.ListRedemptionsRequest(customer_id=customer_id), timeout=TIMEOUT
        )
        return list(listing.redemptions)

    async def stop_cardpoints(self) -> None:
        await self.cardpoints.stop(0)

    async def restart_cardpoints(self) -> None:
        self.cardpoints = await start_cardpoints(
            CardpointsSettings(
                **self.auth.server_security,
                address=f"127.0.0.1:{self.cardpoints_port}",
                database_url=f"sqlite:///{self.folder / 'cardpoints.db'}",
                workers=2,
            )
        )

    async def until_ecommerce_reaches_cardpoints(self, customer_id: str, product_id: str) -> None:
        """Wait (bounded) until ecommerce's quotes carry the balance again after a restart.

        ecommerce reconnects with a backoff; a click in that window would find the
        points system still unreachable, as a customer would, and only try again later.
        """
        request = pb.QuoteRedemptionRequest(
            customer_id=customer_id, product_id=product_id, quantity=1
        )
        for _ in range(100):
            reply = await self.shop.QuoteRedemption(request, timeout=TIMEOUT)
            if reply.quote.HasField("available_points"):
                return
            await asyncio.sleep(0.1)
        raise AssertionError("ecommerce did not reach the restarted cardpoints within 10 s")

    async def close(self) -> None:
        await self.storefront.stop()
        await self.to_shop.close()
        await self.to_bank.close()
        await self.ecommerce.stop(grace=1)
        await self.cardpoints.stop(grace=1)


async def start_stack(folder: Path, auth: Callers, **ecommerce: Any) -> Stack:
    """Cardpoints and ecommerce on SQLite in `folder`, and a storefront in front of them.

    The recovery loop is off unless asked for: a PENDING redemption stays PENDING until
    the customer tries again.
    """
    cardpoints = await start_cardpoints(
        CardpointsSettings(
            **auth.server_security,
            address="127.0.0.1:0",
            database_url=f"sqlite:///{folder / 'cardpoints.db'}",
            workers=2,
        )
    )
    options: dict[str, Any] = {
        "recovery_interval": 0.0,
        "deduct_timeout": 1.0,
        "workers": 2,
        **ecommerce,
    }
    shop = await start_ecommerce(
        EcommerceSettings(
            **auth.ecommerce_security,
            address="127.0.0.1:0",
            database_url=f"sqlite:///{folder / 'ecommerce.db'}",
            cardpoints_address=f"127.0.0.1:{cardpoints.port}",
            **options,
        )
    )
    storefront = await start_storefront(
        StorefrontSettings(
            address="127.0.0.1:0",
            ecommerce_address=f"127.0.0.1:{shop.port}",
            dev_sign_in=True,
            redeem_timeout=20.0,
        )
    )
    return Stack(
        folder=folder,
        cardpoints=cardpoints,
        ecommerce=shop,
        storefront=storefront,
        cardpoints_port=cardpoints.port,
        to_bank=auth.channel(f"127.0.0.1:{cardpoints.port}"),
        to_shop=auth.channel(f"127.0.0.1:{shop.port}"),
        auth=auth,
        ecommerce_overrides=options,
    )

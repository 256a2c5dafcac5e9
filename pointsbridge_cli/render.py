"""Responses drawn for people: a panel per resource, a table per listing."""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import Group
from rich.panel import Panel
from rich.text import Text

from pointsbridge.cardpoints.v1 import cardpoints_pb2 as cp
from pointsbridge.ecommerce.v1 import ecommerce_pb2 as ec
from pointsbridge_cli.formats import enum_label, money, record, table, timestamp, with_more

# Card points


def account(value: cp.Account) -> Panel:
    return record(
        "Card account",
        [
            ("Account", value.account_id),
            ("Holder", value.holder_name),
            ("State", enum_label(cp.AccountState, value.state)),
            ("Balance", f"{value.balance} points"),
            ("Opened", timestamp(value, "create_time")),
            ("Updated", timestamp(value, "update_time")),
        ],
    )


def accounts(response: cp.ListAccountsResponse) -> Group:
    rows = [
        (
            a.account_id,
            a.holder_name,
            enum_label(cp.AccountState, a.state),
            a.balance,
            timestamp(a, "create_time"),
            timestamp(a, "update_time"),
        )
        for a in response.accounts
    ]
    listing = table(
        "Card accounts, by account id",
        ["Account", "Holder", "State", "Balance", "Opened", "Updated"],
        rows,
    )
    return with_more(listing, len(rows), response.next_page_token)


def credit(response: cp.CreditPointsResponse) -> Group:
    entry = response.entry
    line = Text(
        f"Credited {entry.amount} points to {response.account.account_id} "
        f"(request id {entry.request_id}); balance now {entry.balance_after}."
    )
    return Group(line, account(response.account))


def transactions(response: cp.ListTransactionsResponse) -> Group:
    rows = [
        (
            timestamp(t, "create_time"),
            enum_label(cp.EntryType, t.type),
            f"{t.amount:+d}",
            t.balance_after,
            t.request_id,
            t.reference_id,
            t.reason,
        )
        for t in response.transactions
    ]
    listing = table(
        "Ledger, newest first",
        ["Time", "Type", "Points", "Balance after", "Request id", "Reference", "Reason"],
        rows,
    )
    return with_more(listing, len(rows), response.next_page_token)


# Coupon products and exchange ratios


def product(value: ec.CouponProduct) -> Panel:
    return record(
        "Coupon product",
        [
            ("Product", value.product_id),
            ("Name", value.display_name),
            ("Face value", money(value.face_value_minor, value.currency)),
            ("Points per coupon", value.points_per_coupon),
            ("Ratio version", value.ratio_version),
            ("Valid for", f"{value.validity_days} days"),
            ("Max per redemption", value.max_quantity_per_redemption),
            ("Active", "yes" if value.active else "no"),
            ("Created", timestamp(value, "create_time")),
        ],
    )


def products(response: ec.ListCouponProductsResponse) -> Group:
    rows = [
        (
            p.product_id,
            p.display_name,
            money(p.face_value_minor, p.currency),
            p.points_per_coupon,
            p.ratio_version,
            p.validity_days,
            p.max_quantity_per_redemption,
            "yes" if p.active else "no",
        )
        for p in response.products
    ]
    listing = table(
        "Coupon products",
        [
            "Product",
            "Name",
            "Face value",
            "Points/coupon",
            "Ratio version",
            "Valid days",
            "Max qty",
            "Active",
        ],
        rows,
    )
    return with_more(listing, len(rows), response.next_page_token)


def ratio_set(response: ec.SetExchangeRatioResponse) -> Group:
    ratio = response.ratio
    line = Text(
        f"{ratio.product_id} now costs {ratio.points_per_coupon} points per coupon "
        f"(ratio version {ratio.version})."
    )
    return Group(line, product(response.product))


def ratios(response: ec.ListExchangeRatiosResponse) -> Group:
    rows = [
        (r.version, r.points_per_coupon, timestamp(r, "effective_time")) for r in response.ratios
    ]
    title = "Exchange ratio history, newest first"
    if response.ratios:
        title = f"{title}: {response.ratios[0].product_id}"
    listing = table(title, ["Version", "Points/coupon", "Effective"], rows)
    return with_more(listing, len(rows), response.next_page_token)


def card_link(value: ec.CardLink) -> Panel:
    return record(
        "Card link",
        [
            ("Customer", value.customer_id),
            ("Card account", value.card_account_id),
            ("Linked", timestamp(value, "link_time")),
        ],
    )


# Quotes, redemptions and coupons


def quote(value: ec.Quote) -> Panel:
    if value.HasField("available_points"):
        available = str(value.available_points)
    elif not value.card_linked:
        available = "no linked card: redeeming needs one (pointsbridge cards link)"
    else:
        available = "unknown: the card-points system did not say"
    return record(
        "Quote",
        [
            ("Product", value.product_id),
            ("Quantity", value.quantity),
            ("Points required", value.points_required),
            (
                "Points per coupon",
                f"{value.points_per_coupon} (ratio version {value.ratio_version})",
            ),
            ("Face value total", money(value.face_value_total_minor, value.currency)),
            ("Available points", available),
        ],
    )


def coupon_rows(coupons: Iterable[ec.Coupon]) -> list[tuple[object, ...]]:
    return [
        (
            c.code,
            enum_label(ec.CouponState, c.state),
            c.product_id,
            money(c.face_value_minor, c.currency),
            timestamp(c, "expire_time"),
            c.used_order_id,
            c.redemption_id,
        )
        for c in coupons
    ]


_COUPON_COLUMNS = [
    "Code",
    "State",
    "Product",
    "Face value",
    "Expires",
    "Order",
    "Redemption",
]


def redemption(value: ec.Redemption) -> Group:
    panel = record(
        "Redemption",
        [
            ("Redemption", value.redemption_id),
            ("State", enum_label(ec.RedemptionState, value.state)),
            ("Failure reason", value.failure_reason),
            ("Customer", value.customer_id),
            ("Card account", value.card_account_id),
            ("Product", value.product_id),
            ("Quantity", value.quantity),
            ("Points", f"{value.points} ({value.points_per_coupon} per coupon)"),
            ("Ratio version", value.ratio_version),
            ("Refunded points", value.refunded_points),
            ("Request id", value.request_id),
            ("Deduction", value.deduction_id),
            ("Created", timestamp(value, "create_time")),
            ("Updated", timestamp(value, "update_time")),
        ],
    )
    if not value.coupons:
        return Group(panel)
    return Group(panel, table("Coupons", _COUPON_COLUMNS, coupon_rows(value.coupons)))


def redemptions(response: ec.ListRedemptionsResponse, *, customers: bool = False) -> Group:
    """The listing; with `customers`, of several customers, so each row names its own."""
    rows = [
        (
            r.redemption_id,
            *((r.customer_id,) if customers else ()),
            enum_label(ec.RedemptionState, r.state),
            r.product_id,
            r.quantity,
            r.points,
            r.refunded_points,
            r.failure_reason,
            timestamp(r, "create_time"),
        )
        for r in response.redemptions
    ]
    columns = ["Redemption", "State", "Product", "Qty", "Points", "Refunded", "Failure", "Created"]
    if customers:
        columns.insert(1, "Customer")
    listing = table("Redemptions, newest first", columns, rows)
    return with_more(listing, len(rows), response.next_page_token)


def coupon(value: ec.Coupon) -> Panel:
    return record(
        "Coupon",
        [
            ("Code", value.code),
            ("State", enum_label(ec.CouponState, value.state)),
            ("Customer", value.customer_id),
            ("Product", value.product_id),
            ("Face value", money(value.face_value_minor, value.currency)),
            ("Redemption", value.redemption_id),
            ("Issued", timestamp(value, "issue_time")),
            ("Expires", timestamp(value, "expire_time")),
            ("Used on order", value.used_order_id),
            ("Used", timestamp(value, "use_time")),
        ],
    )


def coupons(response: ec.ListCouponsResponse) -> Group:
    rows = coupon_rows(response.coupons)
    listing = table("Coupons, newest first", _COUPON_COLUMNS, rows)
    return with_more(listing, len(rows), response.next_page_token)


def refund(value: ec.Refund) -> Panel:
    return record(
        "Refund",
        [
            ("Refund", value.refund_id),
            ("State", enum_label(ec.RefundState, value.state)),
            ("Redemption", value.redemption_id),
            ("Coupons", ", ".join(value.codes)),
            ("Points", value.points),
            ("Reversal", value.reversal_id),
            ("Request id", value.request_id),
            ("Created", timestamp(value, "create_time")),
        ],
    )

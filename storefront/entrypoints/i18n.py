"""Entrypoints room: the pages' words in English and Chinese, and how money and points read."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from google.protobuf.timestamp_pb2 import Timestamp

from servicekit.timestamps import from_timestamp

LOCALES = ("en", "zh-CN")
DEFAULT_LOCALE = "en"

# ISO 4217 minor-unit digits of the currencies the storefront names; others read as 2.
MINOR_DIGITS: Mapping[str, int] = {
    "CNY": 2,
    "USD": 2,
    "EUR": 2,
    "GBP": 2,
    "HKD": 2,
    "TWD": 2,
    "SGD": 2,
    "JPY": 0,
    "KRW": 0,
}
# zh-CN writes these with a sign; English writes the code, except for the dollar.
SIGNS_ZH: Mapping[str, str] = {
    "CNY": "¥",
    "USD": "US$",
    "EUR": "€",
    "GBP": "£",
    "HKD": "HK$",
    "JPY": "JP¥",
}
SIGNS_EN: Mapping[str, str] = {"USD": "$"}


def negotiate(accept_language: str) -> str:
    """The best of LOCALES for an Accept-Language header (q-values honoured)."""
    choices: list[tuple[float, int, str]] = []
    for position, part in enumerate(accept_language.split(",")[:20]):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                quality = float(params[2:])
            except ValueError:
                quality = 0.0
        tag = tag.strip().lower()
        if tag.startswith("zh"):
            locale = "zh-CN"
        elif tag.startswith("en"):
            locale = "en"
        else:
            continue
        if quality > 0:
            choices.append((-quality, position, locale))
    return min(choices)[2] if choices else DEFAULT_LOCALE


def money(minor: int, currency: str, locale: str) -> str:
    """A face value from minor units: ¥10.00 in Chinese, CNY 10.00 in English. Integers only."""
    digits = MINOR_DIGITS.get(currency, 2)
    major, rest = divmod(abs(minor), 10**digits)
    amount = f"{major:,}" + (f".{rest:0{digits}d}" if digits else "")
    sign = "-" if minor < 0 else ""
    signs = SIGNS_ZH if locale == "zh-CN" else SIGNS_EN
    if currency in signs:
        return f"{sign}{signs[currency]}{amount}"
    return f"{sign}{currency} {amount}"


def points(value: int) -> str:
    """Points with digit grouping: 100,000."""
    return f"{value:,}"


def day(stamp: Timestamp) -> str:
    """A date as YYYY-MM-DD (UTC), which reads the same in both languages."""
    if not stamp.seconds:
        return ""
    return from_timestamp(stamp).strftime("%Y-%m-%d")


_EN: dict[str, str] = {
    "lang.name": "English",
    "app.title": "PointsBridge",
    "app.tagline": "Spend your card points on e-coupons",
    "nav.products": "Coupons to redeem",
    "nav.coupons": "My coupons",
    "nav.sign_out": "Sign out",
    "nav.language": "Language",
    "nav.signed_in_as": "Signed in as {customer}",
    "sign_in.title": "Sign in",
    "sign_in.intro": "Paste the sign-in token your card issuer gave you.",
    "sign_in.token": "Sign-in token",
    "sign_in.submit": "Sign in",
    "sign_in.ended": "Your session has ended. Please sign in again.",
    "sign_in.signed_out": "You have signed out.",
    "sign_in.empty": "Paste your sign-in token.",
    "sign_in.malformed": "This is not a sign-in token. Copy the whole token and try again.",
    "sign_in.expired": "This token has expired. Ask for a new one.",
    "sign_in.not_customer": "This token is not a customer's. Use the token issued to you.",
    "sign_in.refused": "The shop did not accept this token. Ask for a new one.",
    "products.title": "Coupons to redeem",
    "products.available": "Your points",
    "products.no_card": "No card is linked to your account yet, so you cannot redeem points.",
    "products.none": "There are no coupons to redeem right now.",
    "products.name": "Coupon",
    "products.face_value": "Face value",
    "products.points_per_coupon": "Points per coupon",
    "products.redeem": "Redeem",
    "products.inactive": "Not offered now",
    "redeem.title": "Redeem {product}",
    "redeem.quantity": "How many coupons",
    "redeem.quantity_hint": "Up to {max} per redemption.",
    "redeem.presets": "Quick picks",
    "redeem.quote": "Quote",
    "redeem.update_quote": "Update the quote",
    "redeem.points_required": "Points required",
    "redeem.face_value_total": "Face value in total",
    "redeem.points_after": "Points left after",
    "redeem.available": "Your points now",
    "redeem.short_by": "{points} points short",
    "redeem.submit": "Redeem points",
    "redeem.ratio": "{points} points per coupon (rate version {version})",
    "redeem.live": "The quote updates as you type.",
    "redeem.back": "Back to all coupons",
    "result.title": "Your redemption",
    "result.completed": "Done: {points} points were spent on {quantity} coupons.",
    "result.pending": (
        "The card-points system did not answer, so we do not know yet whether your points "
        "were spent. Nothing will be charged twice: try again to finish this redemption."
    ),
    "result.failed": "This redemption was refused and nothing was charged.",
    "result.try_again": "Try again",
    "result.codes": "Your coupon codes",
    "result.copy": "Copy",
    "result.copied": "Copied",
    "result.copy_all": "Copy all codes",
    "result.refunded_points": "{points} points given back so far.",
    "result.request_id": "Reference",
    "result.points": "Points",
    "result.refunded": "Refunds",
    "coupons.title": "My coupons",
    "coupons.filter": "Show",
    "coupons.apply": "Filter",
    "coupons.none": "No coupons to show.",
    "coupons.code": "Code",
    "coupons.product": "Coupon",
    "coupons.face_value": "Face value",
    "coupons.state": "State",
    "coupons.expires": "Expires",
    "coupons.select": "Refund",
    "coupons.redemption": "Redemption {id}",
    "coupons.refund": "Refund the selected coupons",
    "coupons.refund_hint": "Unused coupons can be refunded; their points go back to your card.",
    "coupons.refunded": "Refunded: {count} coupons, {points} points back to your card.",
    "coupons.refund_pending": (
        "The coupons are void and their {points} points are on their way back to your card."
    ),
    "coupons.refund_waiting": (
        "The coupons are void; their points come back to your card as soon as the "
        "card-points system answers."
    ),
    "coupons.more": "More coupons",
    "coupons.view": "View",
    "state.all": "All",
    "state.issued": "Unused",
    "state.used": "Used",
    "state.void": "Refunded",
    "state.expired": "Expired",
    "state.pending": "Pending",
    "state.completed": "Completed",
    "state.failed": "Refused",
    "error.title": "Something went wrong",
    "error.body": "The page could not be shown. Nothing was changed by this error.",
    "error.unavailable": "The shop cannot be reached right now. Please try again in a moment.",
    "error.not_found": "There is no such page.",
    "error.reference": "If you contact support, quote this reference: {request_id}",
    "error.csrf": (
        "This form has expired or did not come from this site, so nothing was done. "
        "Go back, reload the page and try again."
    ),
    "error.home": "Back to the coupons",
    "refusal.INSUFFICIENT_POINTS": "You do not have enough points for this many coupons.",
    "refusal.INSUFFICIENT_POINTS.figures": (
        "You do not have enough points: this needs {required} points and you have {available}."
    ),
    "refusal.QUANTITY_LIMIT_EXCEEDED": "You can redeem at most {max} coupons at a time.",
    "refusal.QUANTITY_INVALID": "Enter a whole number of coupons, from 1 to {max}.",
    "refusal.PRODUCT_INACTIVE": "This coupon is not offered any more.",
    "refusal.PRODUCT_NOT_FOUND": "There is no such coupon.",
    "refusal.CARD_NOT_LINKED": (
        "No card is linked to your account, so there are no points to redeem."
    ),
    "refusal.ACCOUNT_FROZEN": "Your card account is frozen; contact your card issuer.",
    "refusal.ACCOUNT_CLOSED": "Your card account is closed.",
    "refusal.ACCOUNT_NOT_FOUND": "Your card account could not be found; contact your card issuer.",
    "refusal.RATE_CHANGED": (
        "The exchange rate changed since your quote. Here is the new quote; nothing was charged."
    ),
    "refusal.POINTS_MISMATCH": (
        "The points did not match the quote. Here is the current quote; nothing was charged."
    ),
    "refusal.QUANTITY_CHANGED": (
        "The quantity changed since the quote. Here is the quote for it; nothing was charged."
    ),
    "refusal.RATE_LIMITED": (
        "Too many requests in a short time. Wait a few seconds, then try again; "
        "nothing was charged."
    ),
    "refusal.POINTS_SYSTEM_UNAVAILABLE": (
        "The card-points system is not answering. Try again in a moment; "
        "nothing will be charged twice."
    ),
    "refusal.REQUEST_ID_REUSED": (
        "This form was already used for something else, so nothing was done. Here is a fresh one."
    ),
    "refusal.COUPON_ALREADY_USED": "This coupon was already used, so it cannot be refunded.",
    "refusal.COUPON_VOID": "This coupon was already refunded.",
    "refusal.COUPON_EXPIRED": "This coupon has expired, so it cannot be refunded.",
    "refusal.COUPON_NOT_FOUND": "There is no such coupon.",
    "refusal.NO_CODES": "Pick at least one unused coupon to refund.",
    "refusal.REVERSAL_EXCEEDS_DEDUCTION": "These points were already given back.",
    "refusal.OTHER": "This could not be done, and nothing was changed.",
}

_ZH: dict[str, str] = {
    "lang.name": "中文",
    "app.title": "积分桥",
    "app.tagline": "用信用卡积分兑换电子券",
    "nav.products": "可兑换的电子券",
    "nav.coupons": "我的电子券",
    "nav.sign_out": "退出登录",
    "nav.language": "语言",
    "nav.signed_in_as": "已登录：{customer}",
    "sign_in.title": "登录",
    "sign_in.intro": "请粘贴发卡机构给您的登录令牌。",
    "sign_in.token": "登录令牌",
    "sign_in.submit": "登录",
    "sign_in.ended": "您的会话已结束，请重新登录。",
    "sign_in.signed_out": "您已退出登录。",
    "sign_in.empty": "请粘贴您的登录令牌。",
    "sign_in.malformed": "这不是登录令牌。请复制完整的令牌后重试。",
    "sign_in.expired": "此令牌已过期，请申请新的令牌。",
    "sign_in.not_customer": "此令牌不属于客户。请使用发给您的令牌。",
    "sign_in.refused": "商城不接受此令牌，请申请新的令牌。",
    "products.title": "可兑换的电子券",
    "products.available": "您的积分",
    "products.no_card": "您的账户尚未绑定信用卡，暂时不能兑换积分。",
    "products.none": "目前没有可兑换的电子券。",
    "products.name": "电子券",
    "products.face_value": "面值",
    "products.points_per_coupon": "每张所需积分",
    "products.redeem": "兑换",
    "products.inactive": "暂停兑换",
    "redeem.title": "兑换{product}",
    "redeem.quantity": "兑换张数",
    "redeem.quantity_hint": "每次最多 {max} 张。",
    "redeem.presets": "快速选择",
    "redeem.quote": "计算积分",
    "redeem.update_quote": "重新计算",
    "redeem.points_required": "所需积分",
    "redeem.face_value_total": "总面值",
    "redeem.points_after": "兑换后剩余积分",
    "redeem.available": "当前积分",
    "redeem.short_by": "还差 {points} 积分",
    "redeem.submit": "确认兑换",
    "redeem.ratio": "每张 {points} 积分（兑换比例第 {version} 版）",
    "redeem.live": "输入张数时，所需积分会即时更新。",
    "redeem.back": "返回全部电子券",
    "result.title": "兑换结果",
    "result.completed": "兑换成功：已用 {points} 积分兑换 {quantity} 张电子券。",
    "result.pending": (
        "积分系统暂未响应，尚不确定积分是否已扣除。不会重复扣分：请点击“重试”完成本次兑换。"
    ),
    "result.failed": "本次兑换被拒绝，未扣除任何积分。",
    "result.try_again": "重试",
    "result.codes": "您的券码",
    "result.copy": "复制",
    "result.copied": "已复制",
    "result.copy_all": "复制全部券码",
    "result.refunded_points": "已退回 {points} 积分。",
    "result.request_id": "参考编号",
    "result.points": "积分",
    "result.refunded": "退券",
    "coupons.title": "我的电子券",
    "coupons.filter": "显示",
    "coupons.apply": "筛选",
    "coupons.none": "没有可显示的电子券。",
    "coupons.code": "券码",
    "coupons.product": "电子券",
    "coupons.face_value": "面值",
    "coupons.state": "状态",
    "coupons.expires": "到期日",
    "coupons.select": "退券",
    "coupons.redemption": "兑换单 {id}",
    "coupons.refund": "退回所选电子券",
    "coupons.refund_hint": "未使用的电子券可以退回，积分将返还到您的信用卡。",
    "coupons.refunded": "已退回 {count} 张电子券，{points} 积分已返还到您的信用卡。",
    "coupons.refund_pending": "电子券已作废，{points} 积分正在返还到您的信用卡。",
    "coupons.refund_waiting": "电子券已作废；积分系统恢复响应后，积分将返还到您的信用卡。",
    "coupons.more": "更多电子券",
    "coupons.view": "查看",
    "state.all": "全部",
    "state.issued": "未使用",
    "state.used": "已使用",
    "state.void": "已退回",
    "state.expired": "已过期",
    "state.pending": "处理中",
    "state.completed": "已完成",
    "state.failed": "已拒绝",
    "error.title": "出错了",
    "error.body": "页面无法显示。此错误没有改变任何数据。",
    "error.unavailable": "暂时无法连接商城，请稍后再试。",
    "error.not_found": "页面不存在。",
    "error.reference": "如需联系客服，请提供参考编号：{request_id}",
    "error.csrf": "此表单已过期或并非来自本站，因此未执行任何操作。请返回、刷新页面后重试。",
    "error.home": "返回电子券列表",
    "refusal.INSUFFICIENT_POINTS": "您的积分不足以兑换这么多张电子券。",
    "refusal.INSUFFICIENT_POINTS.figures": (
        "积分不足：需要 {required} 积分，您现有 {available} 积分。"
    ),
    "refusal.QUANTITY_LIMIT_EXCEEDED": "每次最多兑换 {max} 张电子券。",
    "refusal.QUANTITY_INVALID": "请输入 1 到 {max} 之间的整数张数。",
    "refusal.PRODUCT_INACTIVE": "此电子券已停止兑换。",
    "refusal.PRODUCT_NOT_FOUND": "没有这种电子券。",
    "refusal.CARD_NOT_LINKED": "您的账户尚未绑定信用卡，没有可兑换的积分。",
    "refusal.ACCOUNT_FROZEN": "您的信用卡账户已冻结，请联系发卡机构。",
    "refusal.ACCOUNT_CLOSED": "您的信用卡账户已注销。",
    "refusal.ACCOUNT_NOT_FOUND": "找不到您的信用卡账户，请联系发卡机构。",
    "refusal.RATE_CHANGED": "自您查看报价后兑换比例已变更。以下是新的报价，未扣除任何积分。",
    "refusal.POINTS_MISMATCH": "所需积分与报价不符。以下是当前的报价，未扣除任何积分。",
    "refusal.QUANTITY_CHANGED": "张数在报价后有改动。以下是对应的报价，未扣除任何积分。",
    "refusal.RATE_LIMITED": "请求过于频繁。请等几秒后重试，未扣除任何积分。",
    "refusal.POINTS_SYSTEM_UNAVAILABLE": "积分系统暂未响应。请稍后重试，不会重复扣分。",
    "refusal.REQUEST_ID_REUSED": "此表单已用于其他请求，因此未执行任何操作。这是新的表单。",
    "refusal.COUPON_ALREADY_USED": "此电子券已使用，不能退回。",
    "refusal.COUPON_VOID": "此电子券已退回。",
    "refusal.COUPON_EXPIRED": "此电子券已过期，不能退回。",
    "refusal.COUPON_NOT_FOUND": "没有这张电子券。",
    "refusal.NO_CODES": "请至少选择一张未使用的电子券。",
    "refusal.REVERSAL_EXCEEDS_DEDUCTION": "这些积分已经退回过了。",
    "refusal.OTHER": "无法完成此操作，未做任何改动。",
}

CATALOGUE: Mapping[str, Mapping[str, str]] = {"en": _EN, "zh-CN": _ZH}


@dataclass(frozen=True)
class Translator:
    """The words of one locale; a missing key falls back to English, then to the key."""

    locale: str

    def __call__(self, key: str, **values: object) -> str:
        text = CATALOGUE[self.locale].get(key) or _EN.get(key) or key
        return text.format(**values) if values else text

    @property
    def html_lang(self) -> str:
        return "zh-CN" if self.locale == "zh-CN" else "en"

    def money(self, minor: int, currency: str) -> str:
        return money(minor, currency, self.locale)

    def points(self, value: int) -> str:
        return points(value)

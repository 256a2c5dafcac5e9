"""Who may call each card-points RPC."""

from __future__ import annotations

from servicekit.auth import Rule, admin_only, services_only, services_or_admins

_POINTS = "/pointsbridge.cardpoints.v1.CardPointsService/"
_ADMIN = "/pointsbridge.cardpoints.v1.CardPointsAdminService/"

RULES: dict[str, Rule] = {
    # Moving points is for the e-commerce service alone.
    _POINTS + "DeductPoints": services_only(),
    _POINTS + "GetDeduction": services_only(),
    _POINTS + "ReverseDeduction": services_only(),
    # Reading accounts and the books: the service (quotes, links) and the bank's operators.
    _POINTS + "GetAccount": services_or_admins(),
    _POINTS + "ListTransactions": services_or_admins(),
    _POINTS + "ListDeductions": services_or_admins(),
    _ADMIN + "OpenAccount": admin_only(),
    _ADMIN + "CreditPoints": admin_only(),
    _ADMIN + "SetAccountState": admin_only(),
    _ADMIN + "ListAccounts": admin_only(),
}

"""The storefront: the cardholder's web pages, a thin client of RedemptionService."""

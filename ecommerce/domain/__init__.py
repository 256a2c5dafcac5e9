"""Domain room: the rules of products, redemptions and coupons, free of SQL and gRPC."""

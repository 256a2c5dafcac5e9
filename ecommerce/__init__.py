"""The e-commerce service: coupon products, points quotes, redemptions and e-coupons."""

"""The points programme: earning (orders, events, referrals), the ledger of lots and
entries, redemptions, refunds, expiry, member tiers and the daily job. See docs/loyalty.md."""

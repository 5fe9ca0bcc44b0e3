"""Referrals on hand-computed sequences, on SQLite and PostgreSQL: a sign-up with a code
records the pair, the reward is granted once however often the pass runs or the events
are replayed, a refunded first order takes it back (a debt when it was spent), and
self-referrals, loops, unknown and mistyped codes and second referrers are refused with
their reasons. Codes are stable, and their check character catches a mistyped one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from campaigns.config.keys import derive_key
from campaigns.config.loyalty import LoyaltyConfig, ReferralConfig
from campaigns.customers.identity.merging import merge_customers
from campaigns.customers.identity.unmerging import unmerge
from campaigns.customers.loyalty.balances import ledger_sum, standing
from campaigns.customers.loyalty.daily import earn_now, run_loyalty
from campaigns.customers.loyalty.coupon_codes import ALPHABET, check_character
from campaigns.customers.loyalty.redeeming import Redemption, redeem
from campaigns.customers.loyalty.referral_codes import (
    CODE_PURPOSE,
    derived_code,
    held_codes,
    holders,
    issue_all,
    issue_codes,
    looks_valid,
    normalize_code,
)
from campaigns.customers.loyalty.referrals import (
    converted_referrals_of,
    customer_referrals,
    run_referrals,
)
from campaigns.store.models import Customer, Event, PointsCursor, Referral
from tests.campaigns.customers.loyalty.helpers import add_customer, add_order, entries, lots, set_status

KEY = derive_key("a test installation secret", CODE_PURPOSE)
NOW = datetime(2026, 5, 1, 4, 0, tzinfo=UTC)
LOYALTY = LoyaltyConfig(enabled=True, events={})
#: A well-formed code nobody holds.
UNKNOWN = "ZZZZZZZZ" + check_character("ZZZZZZZZ")


def at(hours: float) -> datetime:
    """``hours`` after 1 May 2026 04:00 UTC (noon in Shanghai)."""
    return NOW + timedelta(hours=hours)


def code_of(engine: sa.Engine, customer_id: int, length: int = 8) -> str:
    with engine.begin() as conn:
        return issue_codes(conn, KEY, [customer_id], length=length, now=NOW)[customer_id]


def signup(engine: sa.Engine, customer_id: int, key: str, *, when: datetime, code: str | None = None,
           channel: str | None = None, name: str = "signup") -> None:
    """A sign-up event (``key`` is its dedupe key) carrying ``code`` and ``channel``."""
    properties = {}
    if code is not None:
        properties["referral_code"] = code
    if channel is not None:
        properties["channel"] = channel
    with engine.begin() as conn:
        conn.execute(sa.insert(Event).values(customer_id=customer_id, name=name, occurred_at=when,
                                             properties=properties, dedupe_key=key))


def referrals(engine: sa.Engine) -> list[tuple[int | None, int, str, str | None]]:
    """``(referrer, referee, status, reason)`` of every referral, in event order."""
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(
            sa.select(Referral.referrer_id, Referral.referee_id, Referral.status, Referral.reason)
            .order_by(Referral.event_id))]


def balance(engine: sa.Engine, customer_id: int, when: datetime) -> int:
    with engine.connect() as conn:
        return standing(conn, LOYALTY, customer_id, now=when).balance


# -- codes -----------------------------------------------------------------------------------


def test_a_code_is_stable_keyed_and_its_check_character_catches_a_typo():
    code = derived_code(KEY, 42, length=8)
    assert len(code) == 9 and set(code) <= set(ALPHABET)
    assert derived_code(KEY, 42, length=8) == code  # the same on every run and machine
    assert derived_code(derive_key("another installation's secret", CODE_PURPOSE), 42, length=8) != code
    assert derived_code(KEY, 43, length=8) != code
    assert looks_valid(code)
    # Every single mistyped character, at every position, fails the check.
    for position in range(len(code)):
        for char in ALPHABET:
            if char != code[position]:
                assert not looks_valid(code[:position] + char + code[position + 1:])
    # So does every swap of two different neighbours.
    for position in range(len(code) - 1):
        if code[position] != code[position + 1]:
            swapped = code[:position] + code[position + 1] + code[position] + code[position + 2:]
            assert not looks_valid(swapped)


def test_codes_are_read_as_typed_or_as_links():
    assert normalize_code(" ab3d-ef5g h ") == "AB3DEF5GH"
    assert normalize_code("https://shop.example/r/ab3def5gh?utm_source=wechat#top") == "AB3DEF5GH"
    assert normalize_code("https://shop.example/r/AB3DEF5GH/") == "AB3DEF5GH"
    assert normalize_code("") is None and normalize_code("  ") is None and normalize_code(123) is None


def test_issued_codes_are_stored_once_and_found_again(engine):
    ann = add_customer(engine, "ann", at=NOW)
    bob = add_customer(engine, "bob", at=NOW)
    with engine.begin() as conn:
        first = issue_codes(conn, KEY, [ann, bob, 999_999], length=8, now=NOW)
    assert first == {ann: derived_code(KEY, ann, length=8), bob: derived_code(KEY, bob, length=8)}
    with engine.begin() as conn:
        # Issued again (or under another secret, or longer): the stored code stands.
        again = issue_codes(conn, derive_key("another secret entirely", CODE_PURPOSE), [ann, bob], length=10,
                            now=at(1))
        assert again == first
        assert holders(conn, [first[ann], "NOBODY234"]) == {first[ann]: ann}
    carl = add_customer(engine, "carl", at=NOW)
    assert issue_all(engine, KEY, length=8, now=NOW, batch_rows=1) == 1
    with engine.connect() as conn:
        assert held_codes(conn, [carl]) == {carl: derived_code(KEY, carl, length=8)}


def test_a_collision_takes_the_next_candidate(engine):
    ann = add_customer(engine, "ann", at=NOW)
    bob = add_customer(engine, "bob", at=NOW)
    # Someone else already holds bob's first candidate.
    with engine.begin() as conn:
        conn.execute(sa.insert(Referral.metadata.tables["referral_code"]).values(
            code=derived_code(KEY, bob, length=8), customer_id=ann, origin_id=ann, issued_at=NOW))
        codes = issue_codes(conn, KEY, [bob], length=8, now=NOW)
    assert codes == {bob: derived_code(KEY, bob, length=8, attempt=1)}


# -- recording and refusals ----------------------------------------------------------------


def test_a_signup_with_a_code_records_the_pair_and_its_channel(engine):
    ann = add_customer(engine, "ann", at=NOW)
    bob = add_customer(engine, "bob", at=NOW)
    cat = add_customer(engine, "cat", at=NOW)
    with engine.begin() as conn:
        conn.execute(sa.update(Customer).where(Customer.id == cat).values(acquisition_channel="store"))
    code = code_of(engine, ann)
    # Typed in lower case with a dash, through the link, and without a code at all.
    signup(engine, bob, "su-bob", when=at(1), code=f"{code[:4].lower()}-{code[4:]}", channel="wechat")
    signup(engine, cat, "su-cat", when=at(2), code=f"https://shop.example/r/{code}")
    signup(engine, add_customer(engine, "dan", at=NOW), "su-dan", when=at(3))
    report = run_referrals(engine, LOYALTY, now=at(4))
    assert (report.recorded, report.refused) == (2, {})
    with engine.connect() as conn:
        rows = conn.execute(sa.select(Referral.referee_id, Referral.channel, Referral.code, Referral.status,
                                      Referral.referred_at).order_by(Referral.id)).all()
    assert [tuple(row) for row in rows] == [(bob, "wechat", code, "pending", at(1)),
                                            (cat, "store", code, "pending", at(2))]
    with engine.connect() as conn:
        assert customer_referrals(conn, bob)["referred_by"]["customer_id"] == "ann"
        assert customer_referrals(conn, ann)["referrals"] == {"pending": 2, "rewarded": 0, "reversed": 0,
                                                             "refused": 0}


def test_refusals_carry_their_reasons(engine):
    a, b, c, d, e = (add_customer(engine, name, at=NOW) for name in "abcde")
    code = {person: code_of(engine, person) for person in (a, b, c, d)}
    mistyped = code[a][:-1] + next(char for char in ALPHABET if char != code[a][-1])
    signup(engine, b, "1", when=at(1), code=code[a])       # a -> b
    signup(engine, c, "2", when=at(2), code=code[b])       # b -> c
    signup(engine, a, "3", when=at(3), code=code[b])       # b -> a: a loop of two (a referred b)
    signup(engine, a, "4", when=at(4), code=code[c])       # c -> a: a loop of three (a -> b -> c)
    signup(engine, d, "5", when=at(5), code=code[d])       # their own code
    signup(engine, e, "6", when=at(6), code=UNKNOWN)       # right shape and check, nobody's
    signup(engine, e, "7", when=at(7), code=mistyped)      # one character off
    signup(engine, e, "8", when=at(8), code=code[d])       # d -> e
    signup(engine, e, "9", when=at(9), code=code[c])       # e already has a referrer
    report = run_referrals(engine, LOYALTY, now=at(10))
    assert referrals(engine) == [
        (a, b, "pending", None), (b, c, "pending", None), (b, a, "refused", "loop"), (c, a, "refused", "loop"),
        (d, d, "refused", "self_referral"), (None, e, "refused", "unknown_code"), (None, e, "refused", "mistyped_code"),
        (d, e, "pending", None), (c, e, "refused", "already_referred"),
    ]
    assert report.recorded == 3
    assert sum(report.refused.values()) == 6


def test_a_loop_within_one_batch_is_refused_like_one_at_a_time(engine):
    a, b = add_customer(engine, "a", at=NOW), add_customer(engine, "b", at=NOW)
    signup(engine, b, "1", when=at(1), code=code_of(engine, a))
    signup(engine, a, "2", when=at(2), code=code_of(engine, b))
    run_referrals(engine, LOYALTY, now=at(3), batch_rows=10)
    assert referrals(engine) == [(a, b, "pending", None), (b, a, "refused", "loop")]


def test_only_signups_after_earn_from_are_recorded(engine):
    a, b = add_customer(engine, "a", at=NOW), add_customer(engine, "b", at=NOW)
    signup(engine, b, "1", when=at(1), code=code_of(engine, a))
    run_referrals(engine, LoyaltyConfig(enabled=True, events={}, earn_from=(NOW + timedelta(days=2)).date()),
                  now=at(2))
    assert referrals(engine) == []


# -- rewards ---------------------------------------------------------------------------------


def test_the_reward_is_granted_once_at_the_first_paid_order(engine):
    ann, bob = add_customer(engine, "ann", at=NOW), add_customer(engine, "bob", at=NOW)
    add_order(engine, bob, "before", at=at(-1), amount=50)   # before the sign-up: not a referral's
    signup(engine, bob, "su-bob", when=at(0), code=code_of(engine, ann))
    run_referrals(engine, LOYALTY, now=at(1))
    assert referrals(engine) == [(ann, bob, "pending", None)]
    assert lots(engine, ann) == []
    add_order(engine, bob, "O-2", at=at(5), amount=80, status="refunded")  # never paid: not the first
    add_order(engine, bob, "O-3", at=at(6), amount=80)
    add_order(engine, bob, "O-4", at=at(7), amount=90)
    report = run_referrals(engine, LOYALTY, now=at(8))
    assert (report.converted, report.rewarded, report.reward_points) == (1, 1, 100)
    assert referrals(engine) == [(ann, bob, "rewarded", "first_paid_order")]
    with engine.connect() as conn:
        row = conn.execute(sa.select(Referral.order_id, Referral.converted_at, Referral.rewarded_at)).one()
    assert tuple(row) == ("O-3", at(6), at(8))
    [lot] = lots(engine, ann)
    assert (lot["source"], lot["rule"], lot["points"], lot["earned_at"]) == ("referral", "referral", 100, at(6))
    # Valid 1 year from the local day of the order (noon 1 May in Shanghai).
    assert lot["expires_at"] == datetime(2027, 4, 30, 16, 0, tzinfo=UTC)

    # Again and again, a reset cursor, the same event re-imported under its key: nothing more.
    for _ in range(2):
        assert run_referrals(engine, LOYALTY, now=at(9)).to_dict() == run_referrals(
            engine, LoyaltyConfig(enabled=True, events={}), now=at(9)).to_dict()
    with engine.begin() as conn:
        conn.execute(sa.update(PointsCursor).where(PointsCursor.source == "referral").values(last_id=0))
    again = run_referrals(engine, LOYALTY, now=at(10))
    assert (again.recorded, again.rewarded, again.reward_points, again.refused) == (0, 0, 0, {})
    with pytest.raises(sa.exc.IntegrityError):
        signup(engine, bob, "su-bob", when=at(0), code=code_of(engine, ann))
    assert len(lots(engine, ann)) == 1
    assert entries(engine, ann) == [("earn", 100, lot["source_ref"])]
    assert balance(engine, ann, at(11)) == 100
    with engine.connect() as conn:
        advocates = conn.execute(sa.select(Customer.external_id).where(converted_referrals_of(Customer.id) >= 1))
        assert advocates.scalars().all() == ["ann"]


def test_a_refunded_first_order_takes_the_reward_back_once(engine):
    ann, bob = add_customer(engine, "ann", at=NOW), add_customer(engine, "bob", at=NOW)
    signup(engine, bob, "su-bob", when=at(0), code=code_of(engine, ann))
    add_order(engine, bob, "O-1", at=at(1), amount=80)
    run_referrals(engine, LOYALTY, now=at(2))
    assert balance(engine, ann, at(2)) == 100
    set_status(engine, "O-1", "refunded")
    report = run_referrals(engine, LOYALTY, now=at(3))
    assert (report.reversed, report.reversed_points, report.owed) == (1, 100, 0)
    assert referrals(engine) == [(ann, bob, "reversed", "refunded")]
    assert balance(engine, ann, at(3)) == 0 == ledger_sum_of(engine, ann)
    # A later paid order of bob's rewards nothing: the referral was rewarded once.
    add_order(engine, bob, "O-2", at=at(4), amount=80)
    for _ in range(2):
        report = run_referrals(engine, LOYALTY, now=at(5))
        assert (report.rewarded, report.reversed) == (0, 0)
    assert [kind for kind, _, _ in entries(engine, ann)] == ["earn", "reverse"]
    with engine.connect() as conn:
        assert conn.execute(sa.select(Customer.id).where(converted_referrals_of(Customer.id) >= 1)).all() == []


def ledger_sum_of(engine: sa.Engine, customer_id: int) -> int:
    with engine.connect() as conn:
        return ledger_sum(conn, customer_id)


def test_a_reward_already_spent_becomes_a_debt_later_earnings_settle(engine):
    ann, bob = add_customer(engine, "ann", at=NOW), add_customer(engine, "bob", at=NOW)
    cat = add_customer(engine, "cat", at=NOW)
    code = code_of(engine, ann)
    signup(engine, bob, "su-bob", when=at(0), code=code)
    add_order(engine, bob, "O-1", at=at(1), amount=80)
    run_referrals(engine, LOYALTY, now=at(2))
    [spent] = redeem(engine, [Redemption("R-1", ann, 70, "goods", at(3))], now=at(3))
    assert spent.status == "redeemed" and balance(engine, ann, at(3)) == 30
    set_status(engine, "O-1", "cancelled")
    report = run_referrals(engine, LOYALTY, now=at(4))
    # 30 left are taken at once, the 70 spent are owed.
    assert (report.reversed_points, report.owed) == (100, 70)
    assert balance(engine, ann, at(4)) == -70 == ledger_sum_of(engine, ann)
    # cat's first order rewards ann again; the 100 pay the debt first.
    signup(engine, cat, "su-cat", when=at(5), code=code)
    add_order(engine, cat, "O-9", at=at(6), amount=10)
    run_referrals(engine, LOYALTY, now=at(7))
    assert balance(engine, ann, at(7)) == 30 == ledger_sum_of(engine, ann)
    by_source = {(lot["source"], lot["rule"]): lot["remaining"] for lot in lots(engine, ann)}
    assert by_source[("debt", "refund")] == 0


def test_forgive_takes_back_only_what_is_left(engine):
    loyalty = LoyaltyConfig(enabled=True, events={}, negative_balance="forgive")
    ann, bob = add_customer(engine, "ann", at=NOW), add_customer(engine, "bob", at=NOW)
    signup(engine, bob, "su-bob", when=at(0), code=code_of(engine, ann))
    add_order(engine, bob, "O-1", at=at(1), amount=80)
    run_referrals(engine, loyalty, now=at(2))
    redeem(engine, [Redemption("R-1", ann, 70, "goods", at(3))], now=at(3))
    set_status(engine, "O-1", "refunded")
    report = run_referrals(engine, loyalty, now=at(4))
    assert (report.reversed_points, report.owed) == (30, 0)
    assert balance(engine, ann, at(4)) == 0


def test_reward_at_signup_and_welcome_points(engine):
    loyalty = LoyaltyConfig(enabled=True, events={}, referrals=ReferralConfig(
        reward_on="signup", reward_points=50, referee_points=20, valid_for="3mo", redeemable=("coupons",)))
    ann, bob = add_customer(engine, "ann", at=NOW), add_customer(engine, "bob", at=NOW)
    signup(engine, bob, "su-bob", when=at(0), code=code_of(engine, ann))
    report = run_referrals(engine, loyalty, now=at(1))
    assert (report.recorded, report.rewarded, report.reward_points, report.welcome_points) == (1, 1, 50, 20)
    assert referrals(engine) == [(ann, bob, "rewarded", "signup")]
    [reward], [welcome] = lots(engine, ann), lots(engine, bob)
    assert (reward["points"], reward["kinds"], reward["earned_at"]) == (50, ",coupons,", at(0))
    assert (welcome["rule"], welcome["points"]) == ("referral_welcome", 20)
    # The first order is recorded as the conversion; a refund takes nothing back (the
    # reward was for the sign-up).
    add_order(engine, bob, "O-1", at=at(2), amount=80)
    assert run_referrals(engine, loyalty, now=at(3)).converted == 1
    set_status(engine, "O-1", "refunded")
    assert run_referrals(engine, loyalty, now=at(4)).reversed == 0
    assert run_referrals(engine, loyalty, now=at(5)).to_dict()["rewarded"] == 0
    assert balance(engine, ann, at(5)) == 50 and balance(engine, bob, at(5)) == 20


def test_referrals_off_records_nothing(engine):
    ann, bob = add_customer(engine, "ann", at=NOW), add_customer(engine, "bob", at=NOW)
    signup(engine, bob, "su-bob", when=at(0), code=code_of(engine, ann))
    run_referrals(engine, LoyaltyConfig(enabled=True, referrals=ReferralConfig(enabled=False)), now=at(1))
    run_referrals(engine, LoyaltyConfig(enabled=False), now=at(1))
    assert referrals(engine) == []


# -- merges ----------------------------------------------------------------------------------


def test_a_merged_customers_code_names_the_survivor_and_a_self_referral_is_refused(engine):
    ann = add_customer(engine, "ann", at=NOW)
    ann2 = add_customer(engine, "ann-shop", at=at(1))
    bob = add_customer(engine, "bob", at=at(2))
    own, other = code_of(engine, ann), code_of(engine, ann2)
    # ann's second record signs up with ann's code before anyone knows they are one person.
    signup(engine, ann2, "su-ann2", when=at(3), code=own)
    run_referrals(engine, LOYALTY, now=at(4))
    assert referrals(engine) == [(ann, ann2, "pending", None)]
    with engine.begin() as conn:
        merge_id = merge_customers(conn, survivor_id=ann, merged_id=ann2, reason="test", actor="test", now=at(5))
    assert referrals(engine) == [(ann, ann, "refused", "self_referral")]
    with engine.connect() as conn:
        assert holders(conn, [own, other]) == {own: ann, other: ann}
        assert held_codes(conn, [ann]) == {ann: own}  # the survivor keeps its own
    # The merged record's code, used now, is the survivor's own: a self-referral.
    signup(engine, ann, "su-ann", when=at(6), code=other)
    signup(engine, bob, "su-bob", when=at(7), code=other)
    run_referrals(engine, LOYALTY, now=at(8))
    assert referrals(engine)[1:] == [(ann, ann, "refused", "self_referral"), (ann, bob, "pending", None)]
    with engine.begin() as conn:
        unmerge(conn, merge_id=merge_id, now=at(9))
    assert referrals(engine)[0] == (ann, ann2, "pending", None)
    with engine.connect() as conn:
        assert holders(conn, [own, other]) == {own: ann, other: ann2}


def test_two_referred_records_merged_keep_the_earlier_referrer(engine):
    ann, bob = add_customer(engine, "ann", at=NOW), add_customer(engine, "bob", at=NOW)
    cat, cat2 = add_customer(engine, "cat", at=NOW), add_customer(engine, "cat-app", at=at(1))
    signup(engine, cat2, "1", when=at(2), code=code_of(engine, bob))
    signup(engine, cat, "2", when=at(3), code=code_of(engine, ann))
    run_referrals(engine, LOYALTY, now=at(4))
    with engine.begin() as conn:
        merge_customers(conn, survivor_id=cat, merged_id=cat2, reason="test", actor="test", now=at(5))
    # bob's referral came first and stands; ann's is refused.
    assert referrals(engine) == [(bob, cat, "pending", None), (ann, cat, "refused", "already_referred")]


def test_the_daily_job_and_earn_now_reward_referrals_and_move_tiers(engine):
    loyalty = LoyaltyConfig(enabled=True, events={}, referrals=ReferralConfig(reward_points=1000))
    ann, bob = add_customer(engine, "ann", at=NOW), add_customer(engine, "bob", at=NOW)
    signup(engine, bob, "su-bob", when=at(0), code=code_of(engine, ann))
    add_order(engine, bob, "O-1", at=at(1), amount=80)
    earn_now(engine, loyalty, now=at(2))
    # 1000 referral points reach silver at once.
    with engine.connect() as conn:
        assert standing(conn, loyalty, ann, now=at(2)).tier == "silver"
    set_status(engine, "O-1", "refunded")
    report = run_loyalty(engine, loyalty, now=at(3)).to_dict()
    assert report["referrals"]["reversed"] == 1 and report["referrals"]["reversed_points"] == 1000
    assert balance(engine, ann, at(3)) == 0


def test_advocates_in_audience_expressions(engine):
    from campaigns.audience.compiler import compile_expression
    from campaigns.audience.language import ExpressionError
    from campaigns.audience.parser import parse_expression

    ann, bob, cat, dan = (add_customer(engine, name, at=NOW) for name in ("ann", "bob", "cat", "dan"))
    signup(engine, bob, "1", when=at(0), code=code_of(engine, ann))   # bought: ann is an advocate
    signup(engine, cat, "2", when=at(0), code=code_of(engine, dan))   # bought, refunded: dan is not
    signup(engine, dan, "3", when=at(0), code=code_of(engine, bob))   # never bought: bob is not
    add_order(engine, bob, "O-bob", at=at(1), amount=10)
    add_order(engine, cat, "O-cat", at=at(1), amount=10)
    run_referrals(engine, LOYALTY, now=at(2))
    set_status(engine, "O-cat", "refunded")
    run_referrals(engine, LOYALTY, now=at(3))

    def matching(text: str) -> set[str]:
        condition = compile_expression(parse_expression(text, rfm_names=[], tiers=("member",)), now=at(4),
                                       segments={}, loyalty=LOYALTY)
        with engine.connect() as conn:
            return set(conn.execute(sa.select(Customer.external_id).where(condition)).scalars())

    assert matching("referrals_converted >= 1") == {"ann"}
    assert matching("referrals_converted == 0") == {"bob", "cat", "dan"}
    with pytest.raises(ExpressionError, match="loyalty programme"):
        compile_expression(parse_expression("referrals_converted >= 1", rfm_names=[], tiers=None), now=at(4),
                           segments={}, loyalty=LoyaltyConfig(enabled=False))


def test_small_batches_among_other_events_record_every_signup_once(engine):
    ann = add_customer(engine, "ann", at=NOW)
    code = code_of(engine, ann)
    people = [add_customer(engine, f"p{n}", at=NOW) for n in range(5)]
    for n, person in enumerate(people):
        signup(engine, person, f"view-{n}", when=at(n), name="page_view", code=code)  # not a sign-up
        signup(engine, person, f"su-{n}", when=at(n), code=code)
    report = run_referrals(engine, LOYALTY, now=at(9), batch_rows=2)
    assert report.recorded == 5
    assert referrals(engine) == [(ann, person, "pending", None) for person in people]
    with engine.connect() as conn:
        last = conn.execute(sa.select(PointsCursor.last_id).where(PointsCursor.source == "referral")).scalar()
        assert last == conn.execute(sa.select(sa.func.max(Event.id))).scalar()
    assert run_referrals(engine, LOYALTY, now=at(10), batch_rows=2).recorded == 0

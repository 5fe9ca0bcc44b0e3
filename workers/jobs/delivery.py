"""One job's work: claim a batch of ledger rows, render, send, record.

The ledger row exists before this runs (the scheduler wrote it); the claim guarantees no
other job sends the same row; the record step writes every attempt and status change
of the batch in one transaction.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from campaigns.config.secretvalues import read_secret
from campaigns.customers.loyalty.coupons import AssignedCoupon, CouponBatch, coupons_for_batch, sample_coupon
from campaigns.customers.loyalty.referral_codes import ReferralContext, referral_contexts
from campaigns.customers.masking import mask_text
from campaigns.errors import RenderError
from campaigns.feedback.surveys import step_survey
from campaigns.sending.bodylinks import make_body_links
from campaigns.sending.interactions import interaction_channels, last_interactions
from campaigns.sending.ledger import Claim, Recorded, claim, record, release
from campaigns.sending.loyaltycontext import LoyaltyContexts, loyalty_contexts
from campaigns.sending.messages import OutboundMessage, Outcome, SendResult
from campaigns.sending.policy import Skip, quiet_hours_start, send_time_skips
from campaigns.sending.recommendationcontext import (
    MessageRecommendations,
    RecommendationContexts,
    ShownProduct,
    recommendation_contexts,
)
from campaigns.sending.rendering import build_context
from campaigns.sending.tracking import track_html
from workers.jobs.runtime import Runtime

logger = logging.getLogger("nurture.delivery")

#: Share of the lease a job may spend sending; the rest is margin for recording.
LEASE_USABLE_SHARE = 0.8


def deliver_batch(runtime: Runtime, delivery_ids: Sequence[int], *, test_to: str | None = None) -> Recorded:
    """Deliver the still-queued rows among ``delivery_ids``; returns what was recorded.

    ``test_to`` sends test rows (``nurture test-send``) instead, to that address: they
    skip the send-time policy (the marketer asked for this message now, whatever the
    sample customer's consent, caps or quiet hours) and go through the rest unchanged.
    """
    config = runtime.config
    now = runtime.clock()
    claimed = claim(runtime.engine, delivery_ids, now=now, lease=config.worker.lease, tests=test_to is not None)
    # Stop sending well before the lease ends: past it, the scheduler may hand the rows to
    # another worker, and a row sent by both would be a duplicate.
    stop_at = now + config.worker.lease * LEASE_USABLE_SHARE
    skips = {}
    interactions: dict[int, datetime | None] = {}
    coupons = CouponBatch()
    loyalty = LoyaltyContexts()
    recommended = RecommendationContexts()
    referrals: dict[int, ReferralContext] = {}
    if claimed.deliveries:
        try:
            with runtime.engine.connect() as conn:
                skips = send_time_skips(conn, config, claimed.deliveries, now=now) if test_to is None else {}
                interactions = last_interactions(conn, config, claimed.deliveries)
                # Every message's points and tier, read for the whole batch at once. An
                # expiry reminder whose points were spent or expired since has nothing to say.
                loyalty = loyalty_contexts(conn, config, claimed.deliveries, now=now)
                if test_to is None:
                    skips.update({delivery_id: Skip("the points it reminds of were spent or have expired")
                                  for delivery_id in sorted(loyalty.spent) if delivery_id not in skips})
                # The batch's recommended products in stock, read together; a step that
                # requires some is not sent to a customer with too few (never an empty block).
                recommended = recommendation_contexts(
                    conn, config, claimed.deliveries, now=now,
                    uses=lambda template: runtime.renderer.references(template, "recommendations"))
                if test_to is None:
                    skips.update({delivery_id: Skip(reason) for delivery_id, reason in sorted(recommended.short.items())
                                  if delivery_id not in skips})
            if test_to is None:
                # Each message about to go takes its coupon (a retry gets the one it has);
                # a test send shows a sample and uses up none of the pool.
                coupons = coupons_for_batch(runtime.engine, config,
                                            [d for d in claimed.deliveries if d.id not in skips], now=now)
            # Recipients' referral codes, issued before a message first shows one.
            referrals = referral_contexts(runtime.engine, config, sorted(
                {d.customer["id"] for d in claimed.deliveries if d.id not in skips}), now=now)
        except Exception:
            # Nothing was sent: hand the rows straight back rather than leave them to the
            # sweeper for a whole lease (Dramatiq retries this job).
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                release(runtime.engine, claimed, now=now)
            raise
    channels_needing_interaction = interaction_channels(config)
    # Channels apply compliance rules by purpose (opt-out text on marketing SMS, no
    # marketing over WeChat template messages); looked up once per batch.
    campaigns = {campaign.name: campaign for campaign in config.campaigns}
    # Click and open tracking needs the link secret: read once per batch, not per message.
    link_secret = read_secret(config.api.link_secret_env) if config.api.public_url else None

    # Delivery id -> the products its message showed, filled by the send threads and
    # written with the message's outcome (recommendation_sent).
    shown: dict[int, list[ShownProduct]] = {}

    def send_one(delivery: Any) -> tuple[SendResult, datetime, datetime]:
        started = runtime.clock()
        channel = runtime.channels.get(delivery.channel)
        options = config.channels.get(delivery.channel)
        if started >= stop_at:
            result = SendResult(Outcome.DEFER, error="lease nearly over before this row was sent; requeued",
                                defer_until=now)
        elif channel is None or options is None:
            result = SendResult(Outcome.HALT, error=f"channel {delivery.channel!r} is not configured")
        elif delivery.id in coupons.halted:
            # No coupon for it (the pool ran dry): it waits, queued, and the campaign pauses.
            result = SendResult(Outcome.HALT, error=coupons.halted[delivery.id], code="coupon")
        else:
            recipient = test_to or delivery.customer.get(options.recipient)
            if not recipient:
                result = SendResult(Outcome.PERMANENT, error=f"customer has no {options.recipient}")
            else:
                campaign = campaigns.get(delivery.campaign)
                extra = {"purpose": campaign.purpose if campaign else "marketing"}
                # Providers that queue (Twilio) are told to drop the message rather than
                # deliver it into the customer's quiet hours.
                quiet_from = None if test_to else quiet_hours_start(config, campaign, delivery.customer,
                                                                    now=started)
                if quiet_from is not None:
                    extra["deliver_within_s"] = max(1, int((quiet_from - started).total_seconds()))
                if delivery.channel in channels_needing_interaction:
                    extra["last_interaction_at"] = _iso(interactions.get(delivery.customer["id"]))
                coupon = (sample_coupon(campaign, step=delivery.step) if test_to and campaign
                          else coupons.assigned.get(delivery.id))
                products = recommended.for_message(delivery.customer["id"])
                result = _render_and_send(runtime, channel, delivery, str(recipient), now, extra, link_secret,
                                          coupon=coupon, referral=referrals.get(delivery.customer["id"]),
                                          survey=step_survey(config, delivery.campaign, delivery.step,
                                                             send_key=delivery.send_key,
                                                             public_url=config.api.public_url, secret=link_secret),
                                          loyalty=loyalty.contexts.get(delivery.id), recommendations=products)
                if result.outcome is Outcome.OK and products.shown:
                    shown[delivery.id] = products.shown
        return result, started, runtime.clock()

    to_send = [delivery for delivery in claimed.deliveries if delivery.id not in skips]
    recorder = _Recorder(runtime, claimed, skips, now=now, until=now + config.worker.lease, shown=shown)
    # A job's rows go out concurrently on the process's send pool: a provider answering
    # in 100 ms would otherwise hold a 50-row job for 5 s (P3). Outcomes are recorded as
    # they come in, every RECORD_INTERVAL_S: a worker killed mid-job leaves only the
    # sends of that last moment unrecorded (they go again, with the same idempotency key).
    for delivery, outcome in runtime.iter_sends(send_one, to_send):
        recorder.add(delivery.id, outcome)
    recorded = recorder.finish()
    for campaign, reason in recorded.halted.items():
        logger.error("campaign %s paused: %s", campaign, reason)
    return recorded


#: How often a job records the outcomes that came in since it last did (seconds).
RECORD_INTERVAL_S = 0.05


class _Recorder:
    """Records a job's outcomes in small transactions as they arrive, and merges what each
    recording decided (retries, halted campaigns, counts)."""

    def __init__(self, runtime: Runtime, claimed: Claim, skips: dict[int, Skip], *, now: datetime,
                 until: datetime, shown: dict[int, list[ShownProduct]] | None = None) -> None:
        self.runtime = runtime
        self.shown = shown if shown is not None else {}
        self.claimed = claimed
        self.skips = skips  # recorded with the first flush
        self.now = now
        self.until = until
        self.pending: dict[int, tuple[SendResult, datetime, datetime]] = {}
        self.flushed_at = time.monotonic()
        self.retries: list[tuple[int, timedelta]] = []
        self.halted: dict[str, str] = {}
        self.counts: dict[str, int] = {}

    def add(self, delivery_id: int, outcome: tuple[SendResult, datetime, datetime]) -> None:
        """Keep one outcome; record everything pending once the interval has passed."""
        self.pending[delivery_id] = outcome
        if time.monotonic() - self.flushed_at >= RECORD_INTERVAL_S:
            self.flush()

    def flush(self) -> None:
        """Record what is pending (and the skips, the first time)."""
        if not self.pending and not self.skips:
            return
        # A message's shown products are in ``shown`` before its outcome reaches add().
        shown = {delivery_id: self.shown[delivery_id] for delivery_id in self.pending if delivery_id in self.shown}
        recorded = _record_stubbornly(self.runtime, self.claimed, self.pending, self.skips, now=self.now,
                                      until=self.until, shown=shown)
        self.pending, self.skips, self.flushed_at = {}, {}, time.monotonic()
        self.retries += recorded.retries
        self.halted.update(recorded.halted)
        for outcome, count in recorded.counts.items():
            self.counts[outcome] = self.counts.get(outcome, 0) + count

    def finish(self) -> Recorded:
        """Record the rest; what the whole job recorded."""
        self.flush()
        return Recorded(retries=self.retries, halted=self.halted, counts=self.counts)


#: Pauses between attempts to record a batch whose database connection dropped.
RECORD_RETRY_DELAYS_S = (0.2, 0.5, 1.0, 2.0, 4.0)


def _record_stubbornly(runtime: Runtime, claimed: Claim, results: dict[int, tuple[SendResult, datetime, datetime]],
                       skips: dict[int, Skip], *, now: datetime, until: datetime,
                       shown: dict[int, list[ShownProduct]] | None = None) -> Recorded:
    """Record the batch, retrying while the database is briefly away.

    The messages are out by now: failing here would leave the rows ``sending`` until
    their lease expires and then send them again. A dropped connection is worth a few
    retries (the pool pre-pings and reconnects); past the lease, another worker may own
    the rows, and the claim token makes a late record a no-op anyway.
    """
    for delay in (*RECORD_RETRY_DELAYS_S, None):
        try:
            return record(runtime.engine, runtime.config, claimed, results, skips=skips, now=now, shown=shown)
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            if delay is None or runtime.clock() >= until:
                raise
            logger.warning("recording %d deliveries failed (%s); retrying in %.1fs",
                           len(claimed.deliveries), type(exc).__name__, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _render_and_send(runtime: Runtime, channel, delivery, recipient: str, now: datetime,  # type: ignore[no-untyped-def]
                     metadata: dict[str, Any], link_secret: str | None, *,
                     coupon: AssignedCoupon | None = None,
                     referral: ReferralContext | None = None,
                     survey: dict[str, Any] | None = None,
                     loyalty: dict[str, Any] | None = None,
                     recommendations: MessageRecommendations | None = None) -> SendResult:
    try:
        context = build_context(
            customer=delivery.customer,
            stats=delivery.stats,
            campaign=delivery.campaign,
            step=delivery.step,
            send_key=delivery.send_key,
            now=now,
            # The body's unsubscribe and preference links share the click tracking's
            # public_url and secret, read once per batch.
            links=make_body_links(delivery.send_key, public_url=runtime.config.api.public_url, secret=link_secret),
            coupon=coupon,
            referral=referral,
            survey=survey,
            loyalty=loyalty,
            recommendations=recommendations,
        )
        parts = runtime.renderer.render(delivery.template, context)
    except RenderError as exc:
        return SendResult(Outcome.PERMANENT, error=f"render failed: {exc}", code="render")
    api = runtime.config.api
    if "html" in parts and api.public_url and link_secret:
        parts = {**parts, "html": track_html(parts["html"], send_key=delivery.send_key, base_url=api.public_url,
                                             secret=link_secret, opens=api.track_opens)}
    message = OutboundMessage(
        send_key=delivery.send_key,
        delivery_id=delivery.id,
        campaign=delivery.campaign,
        step=delivery.step,
        channel=delivery.channel,
        recipient=recipient,
        customer_external_id=delivery.customer["external_id"],
        parts=parts,
        metadata=metadata,
    )
    try:
        return channel.send(message)
    except Exception as exc:  # a channel bug must not strand the rest of the batch
        logger.exception("channel %s raised on delivery %s", delivery.channel, delivery.id)
        # The ledger keeps errors PII-free: exception texts often quote the recipient.
        return SendResult(Outcome.RETRY, error=f"internal error: {type(exc).__name__}: {mask_text(str(exc))}",
                          code="internal")

"""The message one customer would get from one campaign step now, and why it would not go.

``nurture preview`` (:mod:`workers.cli.preview`) shows a marketer what a send would be
before anything is sent. Every decision is taken by the code the real send path runs, so
the preview cannot drift from it:

* the audience, the channel and the reasons none is usable (no address, no consent,
  consent withdrawn, suppressed): :class:`~campaigns.audience.selection.Reach` and
  :func:`~campaigns.audience.selection.audience_conditions`, as planning selects;
* the holdout and the A/B variant: the SQL of :mod:`campaigns.sending.assignment` that
  enrolment evaluates;
* what is re-checked when the message is due (quiet hours, send windows, frequency caps,
  the step's ``when``, suppressions in digest form):
  :func:`~campaigns.sending.policy.send_time_skips`, on a delivery that exists only in memory;
* the parts: :func:`~campaigns.sending.rendering.build_context` and the
  :class:`~campaigns.sending.rendering.TemplateRenderer`, as the worker renders.

A preview only reads: it never enrols, never writes a delivery, never touches the ledger.
Links are shown as the template wrote them (click tracking rewrites them at send time);
``unsubscribe_url`` and ``preferences_url`` are inert links of the real ones' length
(:func:`preview_links`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from campaigns.audience.selection import Reach, audience_conditions, order_facts
from campaigns.config.campaigns import CampaignConfig
from campaigns.config.schema import AppConfig
from campaigns.config.triggers import FeedbackTrigger, PointsExpiringTrigger
from campaigns.customers.identity.lookup import resolve_unique
from campaigns.customers.loyalty.coupons import sample_coupon
from campaigns.customers.loyalty.referral_codes import sample_referral
from campaigns.customers.timezones import customer_zone
from campaigns.errors import NurtureError, RenderError, UnknownCustomerError
from campaigns.feedback.surveys import step_survey
from campaigns.sending.assignment import in_holdout_sql, variant_sql
from campaigns.sending.bodylinks import BodyLinks, body_link_secret, make_body_links
from campaigns.sending.control import PAUSED_BY_HAND
from campaigns.sending.ledger import ClaimedDelivery
from campaigns.sending.loyaltycontext import loyalty_contexts
from campaigns.sending.policy import send_time_skips
from campaigns.sending.previewreasons import Blocker, ChannelCheck, channel_checks, policy_blocker
from campaigns.sending.recommendationcontext import recommendation_contexts
from campaigns.sending.rendering import TemplateRenderer, build_context
from campaigns.sending.smssegments import SmsLength, sms_length
from campaigns.store.models import CampaignState, Customer, CustomerProfile, Delivery, Enrollment

#: The customer fields a template sees as ``customer.*`` (those the ledger loads on claim).
CUSTOMER_FIELDS = (
    "id", "external_id", "name", "email", "phone", "wechat_openid", "timezone", "locale",
    "acquisition_channel", "created_at", "attributes",
)


#: Delivery statuses of a message still to go.
PENDING = ("queued", "sending")


@dataclass
class MessagePreview:
    """What one customer would get from one step of one campaign at ``now``."""

    campaign: str
    step: int
    steps: int
    template: str
    #: The A/B variant shown (an index into the step's variants), None without variants.
    variant: int | None
    #: How the variant was picked: ``assigned`` (the customer's own) or ``chosen`` (--variant).
    variant_source: str | None
    customer: str
    now: datetime
    #: The channel the message would go on (the first usable one), None when none is.
    channel: str | None
    recipient: str | None
    channels: list[ChannelCheck]
    blockers: list[Blocker]
    #: Deliveries already in the ledger for this step and customer (status, channel, times).
    planned: list[dict[str, Any]]
    parts: dict[str, str] = field(default_factory=dict)
    #: The template failed to render: the message would fail with this error.
    render_error: str | None = None
    #: The send key the message is rendered with: the waiting row's, else the one planning
    #: would give (``...:preview`` when it depends on a run or an event still to come).
    send_key: str = ""
    #: ``marketing`` or ``transactional``: channels add compliance text to marketing.
    purpose: str = "marketing"
    #: The customer's time zone (their own, their phone's, else the campaign's): quiet
    #: hours and send windows are in it.
    zone: str = "UTC"
    #: The recommended products the rendered message shows (sku, position, reason), as
    #: ``recommendation_sent`` would record them on sending.
    recommendations: list[dict[str, Any]] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        """``send`` now, ``wait`` (every blocker passes at a known time) or ``no_send``."""
        if self.render_error is not None or any(b.until is None for b in self.blockers):
            return "no_send"
        return "wait" if self.blockers else "send"

    @property
    def sms_text(self) -> str | None:
        """The text an SMS channel sends: the ``sms`` part, else the plain text."""
        text = self.parts.get("sms") or self.parts.get("txt")
        return text.strip() if text is not None else None

    @property
    def sms(self) -> SmsLength | None:
        """Length, encoding and segments of :attr:`sms_text`."""
        text = self.sms_text
        return sms_length(text) if text is not None else None

    @property
    def json_body(self) -> Any:
        """The ``json`` part parsed (WeChat and webhook bodies), None without one."""
        return json.loads(self.parts["json"]) if "json" in self.parts else None

    def as_dict(self) -> dict[str, Any]:
        """The preview as JSON-ready values (times in ISO 8601)."""
        sms = self.sms
        return {
            "campaign": self.campaign, "step": self.step, "steps": self.steps, "template": self.template,
            "variant": self.variant, "variant_source": self.variant_source, "customer": self.customer,
            "now": self.now.isoformat(), "verdict": self.verdict, "channel": self.channel,
            "recipient": self.recipient,
            "channels": [{"channel": c.channel, "recipient": c.recipient, "address": c.address,
                          "problem": c.problem} for c in self.channels],
            "blockers": [{"code": b.code, "message": b.message,
                          "until": b.until.isoformat() if b.until else None} for b in self.blockers],
            "planned": [{k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}
                        for row in self.planned],
            "parts": self.parts,
            "sms": None if sms is None else {"text": self.sms_text, **sms.as_dict()},
            "json": self.json_body,
            "render_error": self.render_error,
            "send_key": self.send_key,
            "zone": self.zone,
            "recommendations": self.recommendations,
        }


def preview_message(
    engine: Engine,
    config: AppConfig,
    renderer: TemplateRenderer,
    *,
    campaign: str,
    customer: str,
    now: datetime,
    step: int = 0,
    variant: int | None = None,
) -> MessagePreview:
    """Preview step ``step`` of ``campaign`` for the customer ``customer`` names (any
    identifier it holds: ``C000007``, ``phone:+86...``; read by ``config.identity``).

    ``variant`` shows that A/B variant instead of the one the customer is assigned.

    Raises:
        NurtureError: no such campaign, step or variant.
        UnknownCustomerError: no customer has that id.
        AmbiguousCustomerError: ``customer`` names two customers.
    """
    now = now.astimezone(UTC)  # shown as UTC; an offset given on the command line is honoured
    campaign_cfg = config.campaign(campaign)
    steps = len(campaign_cfg.steps)
    if not 0 <= step < steps:
        raise NurtureError(f"campaign {campaign!r} has {steps} step(s), numbered 0 to {steps - 1}: no step {step}")
    step_cfg = campaign_cfg.steps[step]
    if variant is not None and not 0 <= variant < len(step_cfg.variants):
        have = (f"variants 0 to {len(step_cfg.variants) - 1}" if step_cfg.variants else "no A/B variants")
        raise NurtureError(f"step {step} of {campaign!r} has {have}: no variant {variant}")
    with engine.connect() as conn:
        person, stats = _customer(conn, config, customer)
        facts = _facts(conn, config, campaign_cfg, step, person["id"], now=now)
        assigned = facts.pop("variant")
        shown = variant if variant is not None else assigned
        template = step_cfg.variants[shown].template if shown is not None else step_cfg.template or ""
        planned = _planned(conn, campaign_cfg.name, step, person["id"])
        blockers = _campaign_blockers(conn, campaign_cfg, person["id"], facts, planned, now=now)
        checks = channel_checks(config, campaign_cfg, person, facts)
        usable = next((c for c in checks if c.problem is None), None)
        send_key = (planned[0]["send_key"] if planned
                    else f"{campaign_cfg.name}:{step}:{person['id']}:{_occurrence(campaign_cfg)}")
        # A row already waiting in the ledger is checked as itself: the caps must not count
        # it as a rival for its own slot. Otherwise id 0, which no row has.
        waiting = next((row for row in planned if row["status"] in PENDING), None)
        pending = waiting["id"] if waiting else 0
        # The customer's points and tier as the worker reads them (the lots a planned
        # expiry reminder names, or those it would name now).
        message = ClaimedDelivery(id=pending, send_key=send_key, campaign=campaign_cfg.name, step=step, channel="",
                                  template=template, attempts=0, customer=person, stats=stats)
        loyalty = loyalty_contexts(conn, config, [message], now=now).contexts.get(pending)
        # The customer's recommended products in stock, as the worker reads them; a step
        # that requires more than they have would be skipped.
        recommended = recommendation_contexts(conn, config, [message], now=now)
        if pending in recommended.short:
            blockers.append(Blocker("no_recommendations", recommended.short[pending]))
        if usable is None:
            blockers.append(Blocker("no_channel", "no usable channel: " + "; ".join(
                f"{c.channel}: {c.problem.replace('_', ' ')}" for c in checks if c.problem)))
        else:
            delivery = ClaimedDelivery(id=pending, send_key=send_key, campaign=campaign_cfg.name, step=step,
                                       channel=usable.channel, template=template, attempts=0,
                                       customer=person, stats=stats,
                                       enrollment_id=waiting["enrollment_id"] if waiting else None,
                                       due_at=waiting["due_at"] if waiting else None)
            skip = send_time_skips(conn, config, [delivery], now=now).get(pending)
            if skip is not None:
                blockers.append(policy_blocker(config, campaign_cfg, person, skip, now=now))
    preview = MessagePreview(
        campaign=campaign_cfg.name, step=step, steps=steps, template=template,
        variant=shown, variant_source=None if shown is None else ("chosen" if variant is not None else "assigned"),
        customer=person["external_id"], now=now, channel=usable.channel if usable else None,
        recipient=usable.address if usable else None, channels=checks, blockers=blockers, planned=planned,
        send_key=send_key, purpose=campaign_cfg.purpose, zone=customer_zone(person, campaign_cfg.zone).key,
    )
    # A sample coupon code: a preview uses up none of the pool.
    products = recommended.for_message(person["id"])
    context = build_context(customer=person, stats=stats, campaign=campaign_cfg.name, step=step,
                            send_key=send_key, now=now, links=preview_links(config, send_key), loyalty=loyalty,
                            coupon=sample_coupon(campaign_cfg, step=step), referral=sample_referral(config),
                            recommendations=products,
                            # Score links sealing a send key no message has, as preview_links.
                            survey=step_survey(config, campaign_cfg.name, step,
                                               send_key=PREVIEW_KEY_MARK + send_key[1:],
                                               public_url=config.api.public_url,
                                               secret=body_link_secret(config.api)))
    try:
        preview.parts = renderer.render(template, context)
    except RenderError as exc:
        preview.render_error = str(exc)
    preview.recommendations = [{"sku": p.sku, "category": p.category, "position": p.position, "reason": p.reason}
                               for p in products.shown]
    return preview


#: Marks the send key a preview's links seal: no message's key starts with it (campaign
#: names cannot), so the preference page answers "link not valid" for it.
PREVIEW_KEY_MARK = "~"


def preview_links(config: AppConfig, send_key: str) -> BodyLinks:
    """``unsubscribe_url`` and ``preferences_url`` for a preview: the real links' shape and
    length (an SMS counts them) sealing a send key no message has. A marketer opening a
    preview's link must not unsubscribe the customer; empty, as in the message, without
    ``[api] public_url`` or the link secret."""
    return make_body_links(PREVIEW_KEY_MARK + send_key[1:], public_url=config.api.public_url,
                           secret=body_link_secret(config.api))


def _occurrence(campaign: CampaignConfig) -> str:
    # What planning would key the enrolment by: "once" for a campaign that never re-enters;
    # otherwise it depends on the run or event to come, which a preview cannot know (an
    # expiry reminder is keyed by its lot, a follow-up by its answer, whatever reentry says).
    if isinstance(campaign.trigger, (PointsExpiringTrigger, FeedbackTrigger)):
        return "preview"
    return "once" if campaign.reentry == "never" else "preview"


def _customer(conn: sa.Connection, config: AppConfig, reference: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The customer ``reference`` names, as the ledger loads it on claim, and their order stats."""
    row_id = resolve_unique(conn, reference, rules=config.identity)
    row = None if row_id is None else conn.execute(
        sa.select(*[getattr(Customer, name) for name in CUSTOMER_FIELDS]).where(Customer.id == row_id)
    ).first()
    if row is None:
        raise UnknownCustomerError(reference)
    person = {name: getattr(row, name) for name in CUSTOMER_FIELDS}
    facts = order_facts([person["id"]])
    orders = conn.execute(sa.select(facts)).first()
    stats = {"orders_count": orders.orders_count, "total_spent": float(orders.total_spent or 0),
             "last_order_at": orders.last_order_at} if orders else {
        "orders_count": 0, "total_spent": 0.0, "last_order_at": None}
    return person, stats


def _flag(condition: sa.ColumnElement[bool], name: str) -> sa.Label[int]:
    # 1 or 0 on both databases (SQLite has no boolean type to select).
    return sa.case((condition, 1), else_=0).label(name)


def _facts(conn: sa.Connection, config: AppConfig, campaign: CampaignConfig, step: int, customer_id: int, *,
           now: datetime) -> dict[str, Any]:
    """One query: audience match, holdout, variant, and each channel's consent and
    suppression, from the SQL planning and enrolment run."""
    reach = Reach(config, campaign)
    facts = order_facts([customer_id])
    profile = CustomerProfile.__table__
    conditions = audience_conditions(campaign.audience, facts=facts, now=now, config=config, profile=profile)
    step_cfg = campaign.steps[step]
    columns = [
        _flag(sa.and_(sa.true(), *conditions), "in_audience"),
        _flag(in_holdout_sql(Customer.id, campaign.name, campaign.holdout) if campaign.holdout else sa.false(),
              "held_out"),
        (variant_sql(Customer.id, campaign.name, step, [v.weight for v in step_cfg.variants])
         if step_cfg.variants else sa.null()).label("variant"),
    ]
    for index, name in enumerate(reach.names):
        recipient = reach.fields[name]
        columns += [_flag(reach.consented(recipient), f"consented_{index}"),
                    _flag(reach.withdrawn(recipient), f"withdrawn_{index}"),
                    _flag(reach.suppressed(recipient), f"suppressed_{index}")]
    query = (
        sa.select(*columns).select_from(Customer)
        .outerjoin(facts, facts.c.customer_id == Customer.id)
        .outerjoin(profile, profile.c.customer_id == Customer.id)
    )
    row = conn.execute(reach.join(query).where(Customer.id == customer_id)).mappings().one()
    return dict(row)


def _planned(conn: sa.Connection, campaign: str, step: int, customer_id: int) -> list[dict[str, Any]]:
    """This step's deliveries to this customer already in the ledger, newest first."""
    rows = conn.execute(
        sa.select(Delivery.id, Delivery.enrollment_id, Delivery.send_key, Delivery.status, Delivery.channel, Delivery.variant, Delivery.due_at,
                  Delivery.sent_at, Delivery.last_error)
        .where(Delivery.campaign == campaign, Delivery.step == step, Delivery.customer_id == customer_id)
        .order_by(Delivery.id.desc())
    ).mappings().all()
    return [dict(row) for row in rows]


def _campaign_blockers(conn: sa.Connection, campaign: CampaignConfig, customer_id: int, facts: dict[str, Any],
                       planned: list[dict[str, Any]], *, now: datetime) -> list[Blocker]:
    """What stops the campaign itself from planning this message for this customer."""
    blockers = []
    if not campaign.enabled:
        blockers.append(Blocker("disabled", "the campaign is disabled (enabled = false in config.toml)"))
    paused = conn.execute(sa.select(CampaignState.paused_reason)
                          .where(CampaignState.campaign == campaign.name, CampaignState.paused)).first()
    if paused is not None:
        blockers.append(Blocker("paused", f"the campaign is paused ({paused.paused_reason or PAUSED_BY_HAND}): "
                                          f"it sends nothing until `nurture resume {campaign.name}`"))
    if not facts["in_audience"]:
        blockers.append(Blocker("not_in_audience", "the customer is not in the campaign's audience now"))
    if facts["held_out"]:
        blockers.append(Blocker("held_out", f"the customer is in the campaign's holdout group "
                                            f"({campaign.holdout:.0%} held out to measure lift): never messaged"))
    once = campaign.reentry == "never" and not isinstance(campaign.trigger,
                                                          (PointsExpiringTrigger, FeedbackTrigger))
    if once and not any(row["status"] in PENDING for row in planned):
        enrolled = conn.execute(
            sa.select(Enrollment.enrolled_at, Enrollment.state)
            .where(Enrollment.campaign == campaign.name, Enrollment.customer_id == customer_id)
            .order_by(Enrollment.id.desc())
        ).first()
        if enrolled is not None:
            blockers.append(Blocker("already_enrolled", f"already enrolled on {enrolled.enrolled_at:%Y-%m-%d %H:%M} "
                                                        f"UTC ({enrolled.state}), and the campaign never re-enters"))
    return blockers

"""campaigns/sending/preview.py: the message one customer would get now, and why not, on
a migrated SQLite database; and campaigns/sending/smssegments.py's SMS counting.

Every clock is pinned (MORNING, NIGHT) and quiet hours are stated in the config."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from campaigns.audience.selection import audience_select
from campaigns.errors import NurtureError, UnknownCustomerError
from campaigns.project.loading import load_config
from campaigns.sending.enrolment import enrol
from campaigns.sending.preview import preview_message
from campaigns.sending.rendering import TemplateRenderer
from campaigns.sending.smssegments import sms_length
from campaigns.store.db import make_engine, upgrade
from campaigns.store.models import (
    CampaignState,
    Consent,
    Customer,
    Delivery,
    Enrollment,
    Order,
    Suppression,
)

#: 10:00 in Shanghai: marketing hours.
MORNING = datetime(2026, 6, 1, 2, 0, tzinfo=UTC)
#: 22:00 in Shanghai: inside the quiet hours 21:00-08:00.
NIGHT = datetime(2026, 6, 1, 14, 0, tzinfo=UTC)

CONFIG = """
[database]
url = "{url}"
[profiles]
cron = ""
[compliance]
quiet_hours = "21:00-08:00"
[templates]
dir = "templates"
[channels.mail]
kind = "outbox"
dir = "out"
recipient = "email"
[channels.text]
kind = "outbox"
dir = "out-sms"
recipient = "phone"

[[campaigns]]
name = "promo"
timezone = "Asia/Shanghai"
trigger = {{ manual = true }}
channels = ["mail", "text"]
  [[campaigns.steps]]
  template = "promo/hello"
  [[campaigns.steps]]
  delay = "2d"
    [[campaigns.steps.variants]]
    template = "promo/a"
    [[campaigns.steps.variants]]
    template = "promo/b"

[[campaigns]]
name = "split"
timezone = "Asia/Shanghai"
trigger = {{ manual = true }}
channels = ["mail"]
holdout = 0.5
  [[campaigns.steps]]
    [[campaigns.steps.variants]]
    template = "promo/a"
    [[campaigns.steps.variants]]
    template = "promo/b"

[[campaigns]]
name = "buyers"
timezone = "Asia/Shanghai"
trigger = {{ manual = true }}
channels = ["mail"]
  [campaigns.audience]
  min_orders = 1
  [[campaigns.steps]]
  template = "promo/hello"
  when = "orders_count >= 5"

[[campaigns]]
name = "lunch"
timezone = "Asia/Shanghai"
trigger = {{ manual = true }}
channels = ["mail"]
window = "12:00-13:00"
  [[campaigns.steps]]
  template = "promo/hello"

[[campaigns]]
name = "broken"
timezone = "Asia/Shanghai"
trigger = {{ manual = true }}
channels = ["mail"]
  [[campaigns.steps]]
  template = "promo/broken"
"""

TEMPLATES = {
    "promo/hello.subject.j2": "Hello {{ customer.first_name or 'friend' }}",
    "promo/hello.txt.j2": "Hi {{ customer.name }}, {{ stats.orders_count }} order(s) so far.\n",
    "promo/hello.html.j2": "<p>Hi {{ customer.name }} &amp; welcome</p>",
    "promo/hello.sms.j2": "{{ customer.name }}: 15% off this week, code HELLO",
    "promo/hello.json.j2": '{"to": {{ customer.external_id|tojson }}, "orders": {{ stats.orders_count }}}',
    "promo/a.txt.j2": "variant A for {{ customer.external_id }}",
    "promo/b.txt.j2": "variant B for {{ customer.external_id }}",
    "promo/broken.txt.j2": "last order {{ stats.last_order_at.strftime('%Y') }}",
}


class Shop:
    """A migrated SQLite database, the config above and a renderer on its templates."""

    def __init__(self, tmp_path, url: str) -> None:
        for name, body in TEMPLATES.items():
            path = tmp_path / "templates" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(body, encoding="utf-8")
        (tmp_path / "config.toml").write_text(CONFIG.format(url=url))
        self.config = load_config(tmp_path / "config.toml")
        self.engine = make_engine(url)
        upgrade(self.engine)
        self.renderer = TemplateRenderer.from_config(self.config.templates)

    def add(self, external_id: str, *, name: str | None = "Li Wei", email: str | None = "li@example.com",
            phone: str | None = "+8613800000001", consent: tuple[str, ...] = ("email", "sms"),
            orders: int = 0) -> int:
        with self.engine.begin() as conn:
            customer_id = conn.execute(sa.insert(Customer).values(
                external_id=external_id, name=name, email=email, phone=phone, timezone="Asia/Shanghai",
                created_at=MORNING - timedelta(days=30), updated_at=MORNING, attributes={},
            ).returning(Customer.id)).scalar_one()
            for family in consent:
                conn.execute(sa.insert(Consent).values(customer_id=customer_id, channel=family, status="granted",
                                                       source="test", recorded_at=MORNING))
            for number in range(orders):
                conn.execute(sa.insert(Order).values(order_id=f"O-{external_id}-{number}", customer_id=customer_id,
                                                     ordered_at=MORNING - timedelta(days=10 + number),
                                                     amount=50.0, channel="ecommerce"))
        return customer_id

    def preview(self, campaign: str, customer: str, *, now: datetime = MORNING, **kwargs):
        return preview_message(self.engine, self.config, self.renderer, campaign=campaign, customer=customer,
                               now=now, **kwargs)


@pytest.fixture
def shop(tmp_path, sqlite_url):
    shop = Shop(tmp_path, sqlite_url)
    yield shop
    shop.engine.dispose()


def ledger_rows(engine: sa.Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        return (conn.execute(sa.select(sa.func.count()).select_from(Delivery)).scalar_one(),
                conn.execute(sa.select(sa.func.count()).select_from(Enrollment)).scalar_one())


def test_every_part_for_the_customer_and_the_channel_it_would_go_on(shop):
    shop.add("C1", orders=2)

    preview = shop.preview("promo", "C1")

    assert preview.verdict == "send" and preview.blockers == []
    assert (preview.channel, preview.recipient) == ("mail", "li@example.com")
    assert preview.parts["subject"] == "Hello Li"
    assert preview.parts["txt"] == "Hi Li Wei, 2 order(s) so far."
    assert preview.parts["html"] == "<p>Hi Li Wei &amp; welcome</p>"
    assert preview.json_body == {"to": "C1", "orders": 2}
    data = preview.as_dict()
    assert data["sms"] == {"text": "Li Wei: 15% off this week, code HELLO", "encoding": "GSM-7", "units": 37,
                           "characters": 37, "segments": 1}
    assert ledger_rows(shop.engine) == (0, 0)  # a preview never enrols nor writes the ledger


def test_the_html_is_autoescaped_as_the_worker_renders_it(shop):
    shop.add("C1", name="<b>Bob</b>")

    assert shop.preview("promo", "C1").parts["html"] == "<p>Hi &lt;b&gt;Bob&lt;/b&gt; &amp; welcome</p>"


def test_variant_and_holdout_are_those_enrolment_assigns(shop):
    for number in range(24):
        shop.add(f"C{number:02d}")
    campaign = shop.config.campaign("split")
    with shop.engine.begin() as conn:
        targets = sa.select(audience_select(shop.config, campaign, now=MORNING).subquery("a"),
                            sa.literal("once").label("occurrence")).subquery("targets")
        enrol(conn, shop.config, campaign, targets, base=MORNING, now=MORNING)
        enrolled = {row.external_id: (row.holdout, row.variant) for row in conn.execute(
            sa.select(Customer.external_id, Enrollment.holdout, Delivery.variant)
            .join(Enrollment, Enrollment.customer_id == Customer.id)
            .outerjoin(Delivery, Delivery.enrollment_id == Enrollment.id))}
    assert {held for held, _ in enrolled.values()} == {True, False}
    assert {variant for held, variant in enrolled.values() if not held} == {0, 1}

    for external_id, (held, variant) in enrolled.items():
        preview = shop.preview("split", external_id)
        assert ("held_out" in [b.code for b in preview.blockers]) == held, external_id
        if not held:
            assert (preview.variant, preview.variant_source) == (variant, "assigned")
            assert preview.parts["txt"] == f"variant {'AB'[variant]} for {external_id}"


def test_a_chosen_variant_is_shown_instead_of_the_customers_own(shop):
    shop.add("C1")
    own = shop.preview("promo", "C1", step=1).variant
    other = 1 - own

    preview = shop.preview("promo", "C1", step=1, variant=other)

    assert (preview.variant, preview.variant_source, preview.template) == (other, "chosen", f"promo/{'ab'[other]}")
    assert preview.parts == {"txt": f"variant {'AB'[other]} for C1"}


def test_the_next_channel_is_taken_and_each_channels_problem_named(shop):
    shop.add("NOMAIL", email=None)
    shop.add("NOCONSENT", consent=("sms",))
    shop.add("WITHDRAWN")
    shop.add("SUPPRESSED", email="gone@example.com")
    with shop.engine.begin() as conn:
        conn.execute(sa.update(Consent).where(
            Consent.customer_id == sa.select(Customer.id).where(Customer.external_id == "WITHDRAWN").scalar_subquery(),
            Consent.channel == "email").values(status="withdrawn"))
        conn.execute(sa.insert(Suppression).values(channel="email", address="gone@example.com", reason="bounce"))

    for external_id, problem in [("NOMAIL", "no_address"), ("NOCONSENT", "no_consent"),
                                 ("WITHDRAWN", "consent_withdrawn"), ("SUPPRESSED", "suppressed")]:
        preview = shop.preview("promo", external_id)
        assert [(c.channel, c.problem) for c in preview.channels] == [("mail", problem), ("text", None)], external_id
        assert (preview.channel, preview.recipient, preview.verdict) == ("text", "+8613800000001", "send")


def test_no_usable_channel_says_why_for_each(shop):
    shop.add("C1", phone=None, consent=())

    preview = shop.preview("promo", "C1")

    assert preview.verdict == "no_send" and preview.channel is None
    assert [(b.code, b.message) for b in preview.blockers] == [
        ("no_channel", "no usable channel: mail: no consent; text: no address")]
    assert preview.parts["subject"] == "Hello Li"  # the message is still shown


def test_quiet_hours_hold_it_until_eight_in_the_customers_zone(shop):
    shop.add("C1")

    preview = shop.preview("promo", "C1", now=NIGHT)

    assert preview.verdict == "wait" and preview.channel == "mail"
    [blocker] = preview.blockers
    assert blocker.code == "quiet_hours"
    assert blocker.until == datetime(2026, 6, 2, 0, 0, tzinfo=UTC)  # 08:00 in Shanghai


def test_a_send_window_holds_it_until_the_window_opens(shop):
    shop.add("C1")

    [blocker] = shop.preview("lunch", "C1").blockers

    assert (blocker.code, blocker.until) == ("send_window", datetime(2026, 6, 1, 4, 0, tzinfo=UTC))


def test_a_frequency_cap_defers_it(shop):
    customer_id = shop.add("C1")
    with shop.engine.begin() as conn:
        conn.execute(sa.insert(Delivery).values(
            send_key="other:0:1:once", campaign="lunch", step=0, customer_id=customer_id, channel="mail",
            template="promo/hello", status="sent", due_at=MORNING - timedelta(hours=2),
            dispatch_after=MORNING - timedelta(hours=2), sent_at=MORNING - timedelta(hours=2)))

    preview = shop.preview("promo", "C1")

    assert preview.verdict == "wait"
    assert [(b.code, b.until) for b in preview.blockers] == [
        ("capped", MORNING + timedelta(hours=22, seconds=1))]


def test_audience_step_condition_disabled_and_paused_are_reasons(shop):
    shop.add("NOORDERS")
    shop.add("FEW", orders=2)
    with shop.engine.begin() as conn:
        conn.execute(sa.insert(CampaignState).values(campaign="buyers", paused=True, paused_reason="SMTP login failed"))
    shop.config.campaigns[2] = shop.config.campaigns[2].model_copy(update={"enabled": False})

    outside = shop.preview("buyers", "NOORDERS")
    condition = shop.preview("buyers", "FEW")

    assert [b.code for b in outside.blockers] == ["disabled", "paused", "not_in_audience", "step_condition"]
    assert [b.code for b in condition.blockers] == ["disabled", "paused", "step_condition"]
    assert "SMTP login failed" in condition.blockers[1].message
    assert condition.verdict == "no_send"


def test_a_customer_already_through_a_once_only_campaign_would_not_get_it_again(shop):
    customer_id = shop.add("C1")
    with shop.engine.begin() as conn:
        conn.execute(sa.insert(Enrollment).values(campaign="promo", customer_id=customer_id, occurrence="once",
                                                  enrolled_at=MORNING - timedelta(days=3), holdout=False,
                                                  state="completed"))
        conn.execute(sa.insert(Delivery).values(
            send_key=f"promo:0:{customer_id}:once", campaign="promo", step=0, customer_id=customer_id,
            channel="mail", template="promo/hello", status="sent", due_at=MORNING - timedelta(days=3),
            dispatch_after=MORNING - timedelta(days=3), sent_at=MORNING - timedelta(days=3)))

    preview = shop.preview("promo", "C1")

    assert [b.code for b in preview.blockers] == ["already_enrolled"]
    assert [(p["send_key"], p["status"]) for p in preview.planned] == [(f"promo:0:{customer_id}:once", "sent")]


def test_a_template_failing_for_this_customer_is_reported_not_raised(shop):
    shop.add("C1")  # no orders: stats.last_order_at is None

    preview = shop.preview("broken", "C1")

    assert preview.verdict == "no_send"
    assert "promo/broken.txt.j2" in preview.render_error and preview.parts == {}


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"campaign": "nope"}, "no campaign named 'nope' (campaigns: promo, split, buyers, lunch, broken)"),
    ({"step": 2}, "campaign 'promo' has 2 step(s), numbered 0 to 1: no step 2"),
    ({"step": -1}, "campaign 'promo' has 2 step(s), numbered 0 to 1: no step -1"),
    ({"variant": 0}, "step 0 of 'promo' has no A/B variants: no variant 0"),
    ({"step": 1, "variant": 2}, "step 1 of 'promo' has variants 0 to 1: no variant 2"),
])
def test_unknown_campaign_step_or_variant_is_a_clear_error(shop, kwargs, message):
    shop.add("C1")
    arguments = {"campaign": "promo", "customer": "C1", **kwargs}

    with pytest.raises(NurtureError) as raised:
        preview_message(shop.engine, shop.config, shop.renderer, now=MORNING, **arguments)
    assert str(raised.value) == message


def test_unknown_customer_is_a_clear_error(shop):
    with pytest.raises(UnknownCustomerError, match="no customer with customer_id 'ghost'"):
        shop.preview("promo", "ghost")


@pytest.mark.parametrize(("text", "encoding", "units", "segments"), [
    ("", "GSM-7", 0, 0),
    ("a" * 160, "GSM-7", 160, 1),
    ("a" * 161, "GSM-7", 161, 2),
    ("a" * 306, "GSM-7", 306, 2),
    ("a" * 307, "GSM-7", 307, 3),
    ("€" * 80, "GSM-7", 160, 1),  # the extension table: two septets each
    ("a" * 152 + "€" + "a" * 10, "GSM-7", 164, 2),  # an escape pair never splits
    ("a" * 152 + "€" + "a" * 152, "GSM-7", 306, 3),
    ("您好" * 35, "UCS-2", 70, 1),
    ("您好" * 35 + "!", "UCS-2", 71, 2),
    ("中" * 134, "UCS-2", 134, 2),
    ("中" * 135, "UCS-2", 135, 3),
    ("Hi Li, 15% off 😀", "UCS-2", 17, 1),  # 16 characters, the emoji two units  # one non-GSM character switches the whole text
    ("中" * 66 + "😀" + "中", "UCS-2", 69, 1),
    ("中" * 66 + "😀" + "中" * 66, "UCS-2", 134, 3),  # a surrogate pair never splits
])
def test_sms_segments_gsm7_and_ucs2(text, encoding, units, segments):
    length = sms_length(text)

    assert (length.encoding, length.units, length.segments) == (encoding, units, segments)
    assert length.characters == len(text)


def test_a_chinese_sms_part_is_counted_in_ucs2(shop, tmp_path):
    (tmp_path / "templates" / "promo" / "hello.sms.j2").write_text("【小店】{{ customer.name }}，本周八五折", encoding="utf-8")
    shop.renderer = TemplateRenderer.from_config(shop.config.templates)
    shop.add("C1", name="李伟")

    sms = shop.preview("promo", "C1").as_dict()["sms"]

    assert sms == {"text": "【小店】李伟，本周八五折", "encoding": "UCS-2", "units": 12, "characters": 12, "segments": 1}


def queue(shop: Shop, customer_id: int, *, campaign: str = "promo", step: int = 0, state: str = "active") -> int:
    """An enrolment and its queued delivery for ``campaign`` step ``step``, due an hour ago
    (so it would outrank a message due now for a frequency cap's slot)."""
    with shop.engine.begin() as conn:
        enrollment_id = conn.execute(sa.insert(Enrollment).values(
            campaign=campaign, customer_id=customer_id, occurrence="once", enrolled_at=MORNING - timedelta(hours=1),
            holdout=False, state=state).returning(Enrollment.id)).scalar_one()
        conn.execute(sa.insert(Delivery).values(
            send_key=f"{campaign}:{step}:{customer_id}:once", campaign=campaign, step=step, customer_id=customer_id,
            channel="mail", template="promo/hello", enrollment_id=enrollment_id, status="queued",
            due_at=MORNING - timedelta(hours=1), dispatch_after=MORNING - timedelta(hours=1)))
    return enrollment_id


def test_a_message_waiting_in_the_ledger_does_not_take_its_own_cap_slot(shop):
    customer_id = shop.add("C1")
    queue(shop, customer_id)

    preview = shop.preview("promo", "C1")

    assert preview.verdict == "send", preview.blockers
    assert [(p["send_key"], p["status"]) for p in preview.planned] == [(f"promo:0:{customer_id}:once", "queued")]


def test_a_waiting_message_whose_series_ended_would_not_go(shop):
    customer_id = shop.add("C1", orders=1)
    queue(shop, customer_id, state="exited_goal")

    [blocker] = shop.preview("promo", "C1").blockers

    assert blocker.code == "series_ended" and blocker.until is None


def test_unsubscribe_links_have_the_real_shape_and_length_but_open_no_message(shop, monkeypatch):
    from campaigns.sending.bodylinks import make_body_links
    from campaigns.sending.tokens import verify_unsubscribe_token

    customer_id = shop.add("C1")
    (shop.config.templates.dir / "promo" / "hello.sms.j2").write_text("stop: {{ unsubscribe_url }}", encoding="utf-8")
    shop.renderer = TemplateRenderer.from_config(shop.config.templates)
    assert shop.preview("promo", "C1").parts["sms"] == "stop: "  # no [api] public_url: empty, as when sent

    monkeypatch.setenv("NURTURE_LINK_SECRET", "preview-test-secret")
    shop.config = shop.config.model_copy(
        update={"api": shop.config.api.model_copy(update={"public_url": "https://t.shop.example"})})
    link = shop.preview("promo", "C1").parts["sms"].removeprefix("stop: ")

    real_key = f"promo:0:{customer_id}:once"
    real = make_body_links(real_key, public_url="https://t.shop.example", secret="preview-test-secret")
    assert link.startswith("https://t.shop.example/u/") and len(link) == len(real.unsubscribe_url)
    token = link.rsplit("/", 1)[1]
    assert verify_unsubscribe_token(token, "preview-test-secret") == "~" + real_key[1:]  # no message has it

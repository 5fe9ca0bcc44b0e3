"""Our web endpoints end to end: one-click unsubscribe, preference page, click redirect,
open pixel and bounces, over Starlette's TestClient and a migrated SQLite database."""

from __future__ import annotations

import base64
import hashlib
import hmac
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from starlette.applications import Starlette
from starlette.exceptions import StarletteDeprecationWarning

from campaigns.project.loading import parse_config
from campaigns.responses.preferences import PREFERENCE_SOURCE
from campaigns.sending.tokens import make_click_token, make_open_token, make_unsubscribe_token
from campaigns.store.models import Consent, Customer, Delivery, Response, Suppression
from tests.campaigns.responses.test_dsn import DMARC, HARD_BOUNCE, MAILBOX_FULL, build_dsn
from tests.conftest import grant_consent
from workers.channels.smtp import message_hash
from workers.http.app import web_routes
from workers.http.links import LINK_SECRET_ENV, PIXEL

with warnings.catch_warnings():
    # Starlette 1.x wants httpx2 for its test client and warns at import; httpx works.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

NOW = datetime(2026, 3, 2, 2, 5, tzinfo=UTC)
UNSUB_SECRET = "unsubscribe-secret-for-tests"
LINK_SECRET = "link-secret-for-tests"
API_KEY = "bounce-api-key-123"
CONFIG = """
[api]
key_env = "NURTURE_TEST_WEB_API_KEY"

[channels.mail]
kind = "smtp"
host = "smtp.shop.example"
from = "Shop <news@shop.example>"
envelope_from = "bounce+{send_key_hash}@shop.example"
unsubscribe_url = "https://u.shop.example/u/{token}"
unsubscribe_secret_env = "NURTURE_TEST_UNSUB_SECRET"
"""
BOB = "bob@example.org"
SEND_KEY = "3f" * 32
OTHER_KEY = "a1" * 32
#: The installation secret ([security] secret_env) keying Message-IDs and VERP tags.
SECRET = "installation-secret-for-tests"
#: A send key as the planner writes them: guessable from the customer's row id.
GUESSABLE_KEY = "win_back:0:1:once"


@pytest.fixture
def setup(sqlite_engine, monkeypatch) -> Iterator[tuple[TestClient, sa.Engine]]:
    monkeypatch.setenv("NURTURE_TEST_UNSUB_SECRET", UNSUB_SECRET)
    monkeypatch.setenv(LINK_SECRET_ENV, LINK_SECRET)
    monkeypatch.setenv("NURTURE_TEST_WEB_API_KEY", API_KEY)
    monkeypatch.setenv("NURTURE_SECRET", SECRET)
    engine = sqlite_engine
    with engine.begin() as conn:
        conn.execute(sa.insert(Customer.__table__), [
            {"external_id": "C1", "email": BOB, "phone": "+8613812345678", "created_at": NOW, "updated_at": NOW,
             "attributes": {}},
            {"external_id": "C2", "email": "carol@example.net", "phone": None, "created_at": NOW, "updated_at": NOW,
             "attributes": {}},
        ])
        ids = dict(conn.execute(sa.select(Customer.external_id, Customer.id)).all())
        conn.execute(sa.insert(Delivery.__table__), [
            {"send_key": key, "campaign": "win_back", "step": 0, "customer_id": ids[customer], "channel": "mail",
             "template": "win_back/miss_you", "status": "sent", "due_at": NOW - timedelta(hours=1),
             "dispatch_after": NOW - timedelta(hours=1), "sent_at": NOW - timedelta(hours=1),
             "provider_message_id": message_id, "created_at": NOW, "updated_at": NOW}
            for key, customer, message_id in (
                (SEND_KEY, "C1", f"<{message_hash(SEND_KEY, SECRET)}@shop.example>"),
                (OTHER_KEY, "C2", f"<{message_hash(OTHER_KEY, SECRET)}@shop.example>"),
                # Sent before the installation secret existed: an unkeyed Message-ID.
                (GUESSABLE_KEY, "C1", f"<{hashlib.sha256(GUESSABLE_KEY.encode()).hexdigest()[:32]}@shop.example>"),
            )
        ])
    grant_consent(engine, now=NOW - timedelta(days=30), families=("email", "sms"))
    app = Starlette(routes=web_routes(config=parse_config(CONFIG), engine=engine, clock=lambda: NOW))
    with TestClient(app, follow_redirects=False) as client:
        yield client, engine


def consent(engine: sa.Engine, external_id: str = "C1") -> dict[str, tuple[str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(Consent.channel, Consent.status, Consent.source)
            .join(Customer, Customer.id == Consent.customer_id).where(Customer.external_id == external_id)
        ).all()
    return {channel: (status, source) for channel, status, source in rows}


def responses(engine: sa.Engine, kind: str | None = None) -> list[sa.Row]:
    query = sa.select(Response.kind, Response.provider, Response.provider_ref, Response.delivery_id, Response.payload)
    if kind:
        query = query.where(Response.kind == kind)
    with engine.connect() as conn:
        return list(conn.execute(query.order_by(Response.id)).all())


def suppressions(engine: sa.Engine) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(sa.select(Suppression.channel, Suppression.address)).all()]


ONE_CLICK = {"content": b"List-Unsubscribe=One-Click",
             "headers": {"Content-Type": "application/x-www-form-urlencoded"}}


# -- one-click unsubscribe -------------------------------------------------------------------


def test_one_click_withdraws_email_consent_and_a_second_post_records_nothing_more(setup):
    client, engine = setup
    token = make_unsubscribe_token(SEND_KEY, UNSUB_SECRET)
    first = client.post(f"/u/{token}", **ONE_CLICK)
    second = client.post(f"/u/{token}", **ONE_CLICK)
    assert (first.status_code, second.status_code) == (200, 200)
    assert "unsubscribed" in first.text.lower()
    assert consent(engine)["email"][0] == "withdrawn"
    assert consent(engine)["sms"][0] == "granted"  # the message was an email: SMS untouched
    assert consent(engine, "C2")["email"][0] == "granted"
    rows = responses(engine, "unsubscribed")
    assert [(r.provider, r.provider_ref) for r in rows] == [("web", SEND_KEY)]
    assert rows[0].delivery_id is not None


def test_one_click_accepts_the_multipart_form_rfc_8058_prefers(setup):
    client, engine = setup
    token = make_unsubscribe_token(SEND_KEY, UNSUB_SECRET)
    body = (b"--b\r\nContent-Disposition: form-data; name=\"List-Unsubscribe\"\r\n\r\nOne-Click\r\n--b--\r\n")
    answer = client.post(f"/u/{token}", content=body, headers={"Content-Type": "multipart/form-data; boundary=b"})
    assert answer.status_code == 200
    assert consent(engine)["email"][0] == "withdrawn"


@pytest.mark.parametrize("mangle", [
    lambda t: t[:-2] + ("AA" if t[-2:] != "AA" else "BB"),   # MAC altered
    lambda t: make_unsubscribe_token(SEND_KEY, "another-secret"),
    lambda t: make_click_token(SEND_KEY, "https://shop.example/", UNSUB_SECRET),  # a click token, same secret
    lambda t: "not-a-token",
    lambda t: make_unsubscribe_token("no-such-send-key", UNSUB_SECRET),  # signed, but no such delivery
])
def test_a_tampered_or_foreign_unsubscribe_token_is_refused_and_changes_nothing(setup, mangle):
    client, engine = setup
    token = mangle(make_unsubscribe_token(SEND_KEY, UNSUB_SECRET))
    answer = client.post(f"/u/{token}", **ONE_CLICK)
    assert answer.status_code == 404
    assert answer.json() == {"error": "unknown link"}  # no detail about why
    assert client.get(f"/u/{token}").status_code == 404
    assert consent(engine)["email"][0] == "granted"
    assert responses(engine) == []


def test_one_click_without_the_rfc_8058_body_is_a_400(setup):
    client, engine = setup
    token = make_unsubscribe_token(SEND_KEY, UNSUB_SECRET)
    answer = client.post(f"/u/{token}", content=b"", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert answer.status_code == 400 and "One-Click" in answer.json()["error"]
    assert consent(engine)["email"][0] == "granted"


# -- preference page -------------------------------------------------------------------------


def test_preference_page_shows_the_masked_address_only_and_changes_nothing(setup):
    client, engine = setup
    token = make_unsubscribe_token(SEND_KEY, UNSUB_SECRET)
    page = client.get(f"/u/{token}")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "b***@example.org" in page.text
    assert BOB not in page.text and "13812345678" not in page.text and "C1" not in page.text
    assert page.text.count('type="checkbox"') == 2  # email and sms: the families Bob has
    assert 'value="email" checked' in page.text and 'value="sms" checked' in page.text
    assert page.headers["cache-control"].startswith("no-store")
    assert page.headers["x-frame-options"] == "DENY"
    assert consent(engine)["email"][0] == "granted" and responses(engine) == []


def test_preference_post_withdraws_only_the_unticked_family(setup):
    client, engine = setup
    token = make_unsubscribe_token(SEND_KEY, UNSUB_SECRET)
    form = {"content": b"save=1&family=email", "headers": {"Content-Type": "application/x-www-form-urlencoded"}}
    answer = client.post(f"/u/{token}/preferences", **form)
    assert answer.status_code == 200 and "saved" in answer.text
    assert consent(engine)["email"] == ("granted", "test")
    assert consent(engine)["sms"] == ("withdrawn", PREFERENCE_SOURCE)
    rows = responses(engine, "unsubscribed")
    assert [(r.provider_ref, r.payload["family"]) for r in rows] == [(f"{SEND_KEY}:sms", "sms")]
    # Posting the same form again withdraws nothing more and records nothing more.
    client.post(f"/u/{token}/preferences", **form)
    assert len(responses(engine, "unsubscribed")) == 1
    # The SMS box is now shown as not subscribed and cannot be ticked back on.
    assert 'value="sms"' not in client.get(f"/u/{token}").text


def test_preference_post_without_the_form_changes_nothing(setup):
    client, engine = setup
    token = make_unsubscribe_token(SEND_KEY, UNSUB_SECRET)
    answer = client.post(f"/u/{token}/preferences", content=b"",
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert answer.status_code == 400
    assert {f: s for f, (s, _) in consent(engine).items()} == {"email": "granted", "sms": "granted"}


# -- clicks and opens ------------------------------------------------------------------------


def test_click_redirects_and_records_once_per_url_per_message(setup):
    client, engine = setup
    offer, shoes = "https://shop.example/offer?utm=win_back", "https://shop.example/shoes"
    for url in (offer, offer, shoes):
        answer = client.get(f"/c/{make_click_token(SEND_KEY, url, LINK_SECRET)}")
        assert answer.status_code == 302
        assert answer.headers["location"] == url
        assert answer.headers["referrer-policy"] == "no-referrer"
    client.get(f"/c/{make_click_token(OTHER_KEY, offer, LINK_SECRET)}")
    rows = responses(engine, "clicked")
    assert len(rows) == 3  # offer and shoes for Bob, offer for Carol
    assert len({r.provider_ref for r in rows}) == 3 and all(r.delivery_id for r in rows)


@pytest.mark.parametrize("token", [
    make_click_token(SEND_KEY, "https://shop.example/offer", "wrong-secret"),
    make_click_token(SEND_KEY, "https://shop.example/offer", LINK_SECRET)[:-3] + "AAA",
    make_unsubscribe_token(SEND_KEY, LINK_SECRET),
    "x",
])
def test_a_tampered_click_token_is_a_404_without_redirect(setup, token):
    client, engine = setup
    answer = client.get(f"/c/{token}")
    assert answer.status_code == 404 and "location" not in answer.headers
    assert responses(engine) == []


def test_a_click_token_whose_url_was_swapped_does_not_redirect(setup):
    client, engine = setup
    token = make_click_token(SEND_KEY, "https://shop.example/offer", LINK_SECRET)
    data = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    assert b"shop.example" not in data  # sealed: there is no URL to find and swap
    for position in (1, len(data) // 2, len(data) - 1):  # the SIV, the middle, the end
        tampered = bytearray(data)
        tampered[position] ^= 0x20
        forged = base64.urlsafe_b64encode(bytes(tampered)).rstrip(b"=").decode()
        answer = client.get(f"/c/{forged}")
        assert answer.status_code == 404 and "location" not in answer.headers
    # A format-1 token (mail sent before the upgrade) with its URL swapped fails its MAC.
    payload = len(SEND_KEY).to_bytes(2, "big") + SEND_KEY.encode() + b"https://evil.example/offer"
    mac = hmac.new(b"wrong", b"nurture-click-v1:" + payload, hashlib.sha256).digest()
    answer = client.get("/c/" + base64.urlsafe_b64encode(payload + mac).rstrip(b"=").decode())
    assert answer.status_code == 404 and "location" not in answer.headers
    assert responses(engine) == []


def test_a_click_token_in_the_access_log_shows_neither_send_key_nor_url(setup):
    client, engine = setup
    url = "https://shop.example/track?email=bob@example.org"
    token = make_click_token(SEND_KEY, url, LINK_SECRET)
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    for needle in (SEND_KEY.encode(), b"bob@example.org", b"shop.example"):
        assert needle not in raw and needle.decode() not in token
    answer = client.get(f"/c/{token}")
    assert answer.status_code == 302 and answer.headers["location"] == url
    # A format-1 token still in old mail keeps working.
    payload = len(SEND_KEY).to_bytes(2, "big") + SEND_KEY.encode() + url.encode()
    mac = hmac.new(LINK_SECRET.encode(), b"nurture-click-v1:" + payload, hashlib.sha256).digest()
    old = client.get("/c/" + base64.urlsafe_b64encode(payload + mac).rstrip(b"=").decode())
    assert old.status_code == 302 and old.headers["location"] == url


def test_pixel_records_one_open_per_message_and_is_always_a_gif(setup):
    client, engine = setup
    token = make_open_token(SEND_KEY, LINK_SECRET)
    for path in (f"/o/{token}.gif", f"/o/{token}.gif", "/o/forged.gif",
                 f"/o/{make_open_token(SEND_KEY, 'wrong')}.gif",
                 f"/o/{make_click_token(SEND_KEY, 'https://open.invalid/', LINK_SECRET)}.gif"):
        answer = client.get(path)
        assert answer.status_code == 200 and answer.content == PIXEL
        assert answer.headers["content-type"] == "image/gif"
        assert "no-store" in answer.headers["cache-control"]
    assert [(r.provider, r.provider_ref) for r in responses(engine)] == [("web", SEND_KEY)]


# -- bounces ---------------------------------------------------------------------------------


def post_bounce(client: TestClient, raw: bytes, key: str | None = API_KEY, content_type: str = "message/rfc822"):
    headers = {"Content-Type": content_type}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    return client.post("/bounces", content=raw, headers=headers)


def genuine_dsn(recipients: list[dict[str, str]], *, send_key: str = SEND_KEY, returned: str = "headers") -> bytes:
    """A bounce of one of our messages: its Message-ID and VERP tag keyed with SECRET."""
    tag = message_hash(send_key, SECRET)
    return build_dsn(recipients, returned=returned, to=f"bounce+{tag}@shop.example",
                     original_headers={"Message-ID": f"<{tag}@shop.example>"})


def test_a_hard_bounce_suppresses_the_address_once(setup):
    client, engine = setup
    raw = genuine_dsn([HARD_BOUNCE])
    answer = post_bounce(client, raw)
    assert answer.status_code == 202
    summary = answer.json()
    assert summary["suppressed"] == 1 and summary["recorded"] == 1
    assert summary["recipients"][0]["recipient"] == "b***@example.org"
    assert BOB not in answer.text
    assert suppressions(engine) == [("email", BOB)]
    assert consent(engine)["email"][0] == "withdrawn"
    (row,) = responses(engine, "bounced")
    assert row.provider == "email" and row.delivery_id is not None
    assert BOB not in row.provider_ref and "bob" not in str(row.payload)
    with engine.connect() as conn:
        receipt = conn.execute(sa.select(Delivery.receipt_status).where(Delivery.send_key == SEND_KEY)).scalar()
    assert receipt == "bounced"
    again = post_bounce(client, raw).json()
    assert (again["recorded"], again["duplicates"], again["suppressed"]) == (0, 1, 0)
    assert len(responses(engine)) == 1


def test_a_verp_address_alone_finds_the_delivery(setup):
    client, engine = setup
    # No returned headers at all: only the report's To (our VERP address) names the message.
    raw = genuine_dsn([HARD_BOUNCE], returned="none")
    assert post_bounce(client, raw).json()["suppressed"] == 1
    assert suppressions(engine) == [("email", BOB)]


def test_the_keyed_message_id_alone_finds_the_delivery(setup):
    client, engine = setup
    # Bounced to the plain From address (no VERP): the returned Message-ID carries the tag.
    tag = message_hash(SEND_KEY, SECRET)
    raw = build_dsn([HARD_BOUNCE], to="news@shop.example", original_headers={"Message-ID": f"<{tag}@shop.example>"})
    assert post_bounce(client, raw).json()["suppressed"] == 1
    assert suppressions(engine) == [("email", BOB)]


def test_dmarc_5_7_26_records_a_bounce_but_suppresses_nothing(setup):
    client, engine = setup
    dmarc = {**DMARC, "Final-Recipient": f"rfc822; {BOB}"}
    summary = post_bounce(client, genuine_dsn([dmarc])).json()
    assert summary["suppressed"] == 0 and summary["recipients"][0]["severity"] == "policy"
    assert suppressions(engine) == []
    assert consent(engine)["email"][0] == "granted"
    assert [r.kind for r in responses(engine)] == ["bounced"]


def test_a_soft_bounce_is_undelivered_without_suppression(setup):
    client, engine = setup
    soft = {**MAILBOX_FULL, "Final-Recipient": f"rfc822; {BOB}"}
    summary = post_bounce(client, genuine_dsn([soft])).json()
    assert summary["recipients"][0]["kind"] == "undelivered" and summary["suppressed"] == 0
    assert suppressions(engine) == []


def test_a_forged_bounce_for_a_stranger_suppresses_nobody(setup):
    client, engine = setup
    # Bob's message hash, but a report about Carol: anyone can mail the bounce address.
    stranger = {**HARD_BOUNCE, "Final-Recipient": "rfc822; carol@example.net",
                "Original-Recipient": "rfc822; carol@example.net"}
    summary = post_bounce(client, genuine_dsn([stranger])).json()
    assert summary["suppressed"] == 0 and summary["recipients"][0]["matched"] is False
    assert suppressions(engine) == []


def test_the_forged_dsn_of_issue_12_is_refused_and_suppresses_nothing(setup):
    client, engine = setup
    # What an outsider can compute for customer 1: the guessable send key, its unkeyed
    # SHA-256 as VERP tag and Message-ID, the key itself in the headers that may carry it.
    unkeyed = hashlib.sha256(GUESSABLE_KEY.encode()).hexdigest()[:32]
    forged = build_dsn([HARD_BOUNCE], envelope_id=GUESSABLE_KEY, to=f"bounce+{unkeyed}@shop.example",
                       original_headers={"Message-ID": f"<{unkeyed}@shop.example>",
                                         "X-Nurture-Send-Key": GUESSABLE_KEY})
    answer = post_bounce(client, forged)
    assert answer.status_code == 422 and "none of our messages" in answer.json()["error"]
    assert BOB not in answer.text
    assert suppressions(engine) == [] and responses(engine) == []
    assert consent(engine)["email"][0] == "granted"
    with engine.connect() as conn:
        assert conn.execute(sa.select(Delivery.receipt_status).where(Delivery.receipt_status.is_not(None))).all() == []


def test_a_tag_keyed_with_another_secret_is_refused(setup):
    client, engine = setup
    tag = message_hash(SEND_KEY, "some-other-installation-secret")
    forged = build_dsn([HARD_BOUNCE], to=f"bounce+{tag}@shop.example",
                       original_headers={"Message-ID": f"<{tag}@shop.example>"})
    assert post_bounce(client, forged).status_code == 422
    assert suppressions(engine) == [] and responses(engine) == []


def test_one_bounce_suppresses_only_the_address_its_message_went_to(setup):
    client, engine = setup
    # A genuine tag of Bob's message, with extra blocks naming Carol and an
    # Original-Recipient of Bob on a block whose Final-Recipient is Carol's.
    rerouted = {**HARD_BOUNCE, "Final-Recipient": "rfc822; carol@example.net",
                "Original-Recipient": f"rfc822; {BOB}"}
    carol = {**HARD_BOUNCE, "Final-Recipient": "rfc822; carol@example.net",
             "Original-Recipient": "rfc822; carol@example.net"}
    summary = post_bounce(client, genuine_dsn([rerouted, carol, HARD_BOUNCE])).json()
    assert [r["matched"] for r in summary["recipients"]] == [False, False, True]
    assert summary["suppressed"] == 1
    assert suppressions(engine) == [("email", BOB)]
    assert consent(engine, "C2")["email"][0] == "granted"


def test_bounces_are_refused_while_the_installation_secret_is_unset(setup, monkeypatch):
    client, engine = setup
    monkeypatch.delenv("NURTURE_SECRET")
    answer = post_bounce(client, genuine_dsn([HARD_BOUNCE]))
    assert answer.status_code == 503 and "NURTURE_SECRET is not set" in answer.json()["error"]
    assert suppressions(engine) == [] and responses(engine) == []


@pytest.mark.parametrize("key", [None, "wrong-key", API_KEY.upper()])
def test_bounces_need_the_api_key(setup, key):
    client, engine = setup
    answer = post_bounce(client, build_dsn([HARD_BOUNCE]), key=key)
    assert answer.status_code == 401
    assert suppressions(engine) == [] and responses(engine) == []


def test_bounces_refuse_garbage_and_oversized_bodies_with_json(setup):
    client, engine = setup
    bad = post_bounce(client, b"Subject: hello\r\n\r\nnot a bounce\r\n")
    assert bad.status_code == 400 and "delivery status" in bad.json()["error"]
    big = post_bounce(client, b"x" * (1024 * 1024 + 1))
    assert big.status_code == 413 and "error" in big.json()
    wrong_type = post_bounce(client, build_dsn([HARD_BOUNCE]), content_type="application/json")
    assert wrong_type.status_code == 415
    assert responses(engine) == []


# -- hostile input on the customer-link routes (issue #12 item 3) -----------------------------

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
HOSTILE_LINK_REQUESTS = {
    "preferences: NUL family": ("POST", "/u/{token}/preferences", b"save=1&family=%00", FORM),
    "preferences: invalid UTF-8": ("POST", "/u/{token}/preferences", b"save=1&family=%ED%A0%80", FORM),
    "preferences: 5,000-digit field": ("POST", "/u/{token}/preferences", b"save=" + b"9" * 5000, FORM),
    "preferences: NaN family": ("POST", "/u/{token}/preferences", b"save=1&family=NaN", FORM),
    "preferences: JSON body": ("POST", "/u/{token}/preferences", b'{"save": NaN}', {"Content-Type": "application/json"}),
    "one-click: NUL body": ("POST", "/u/{token}", b"List-Unsubscribe=%00", FORM),
    "one-click: invalid UTF-8 body": ("POST", "/u/{token}", b"List-Unsubscribe=\xed\xa0\x80", FORM),
    "unsubscribe: NUL token": ("POST", "/u/%00", b"List-Unsubscribe=One-Click", FORM),
    "page: lone-surrogate token": ("GET", "/u/%ED%A0%80", b"", {}),
    "click: NUL token": ("GET", "/c/%00", b"", {}),
    "click: invalid UTF-8 token": ("GET", "/c/%ED%A0%80", b"", {}),
    "click: 5,000-digit token": ("GET", "/c/" + "9" * 5000, b"", {}),
    "open: NUL token": ("GET", "/o/%00.gif", b"", {}),
    "open: invalid UTF-8 token": ("GET", "/o/%ED%A0%80.gif", b"", {}),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_LINK_REQUESTS))
def test_hostile_input_on_the_customer_link_routes_is_never_a_5xx_and_changes_nothing(setup, case):
    """The links in a message are the routes anyone can reach: a malformed token or form
    is answered (4xx, or the page/pixel that never reveals anything) and stores nothing."""
    client, engine = setup
    method, path, body, headers = HOSTILE_LINK_REQUESTS[case]
    token = make_unsubscribe_token(SEND_KEY, UNSUB_SECRET)
    before = consent(engine)
    answer = client.request(method, path.format(token=token), content=body, headers=headers)
    assert answer.status_code < 500, (case, answer.status_code, answer.text[:200])
    if not path.startswith("/o/"):
        assert answer.status_code >= 400 or "unsubscribed" not in answer.text.lower(), case
    assert consent(engine) == before
    assert responses(engine) == []

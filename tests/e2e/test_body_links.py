"""The unsubscribe and preference links in a message body, end to end: a marketing email
sent by the in-process workers to the outbox, the link read out of the file, and the real
web app (``workers/http/preferences.py``) opening the preference page of that recipient
and withdrawing their consent there (campaigns/sending/bodylinks.py)."""

from __future__ import annotations

import email
import email.policy
import re
import warnings
from pathlib import Path

import sqlalchemy as sa
from starlette.applications import Starlette
from starlette.exceptions import StarletteDeprecationWarning

from campaigns.customers.masking import mask_email
from campaigns.store.models import Consent, Customer
from tests.campaigns.sending.policy_world import campaign, world_with
from workers.http.app import web_routes
from workers.http.links import LINK_SECRET_ENV

with warnings.catch_warnings():
    # Starlette 1.x wants httpx2 for its test client and warns at import; httpx works.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

PUBLIC_URL = "https://t.shop.example"
API = f'[api]\npublic_url = "{PUBLIC_URL}"\n'
LINK = re.compile(re.escape(PUBLIC_URL) + r"/u/[A-Za-z0-9_-]+")
ADDRESSES = {"C1": "bob@example.org", "C2": "carol@example.net"}


def sent_links(root: Path) -> dict[str, str]:
    """The preference link in each outbox message, by its To address."""
    found = {}
    for path in root.rglob("*.eml"):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        body = message.get_body(("plain",)).get_content()
        [link] = set(LINK.findall(body))
        found[str(message["To"])] = link
    return found


def test_the_link_in_a_sent_email_opens_that_recipients_preference_page(tmp_path, sqlite_url, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(LINK_SECRET_ENV, "link-secret-for-tests")
    world = world_with(tmp_path, sqlite_url, compliance=API, campaigns=campaign("promo"))
    (tmp_path / "templates" / "m.txt.j2").write_text("Hello {{ customer.external_id }}\n\nPreferences: "
                                                     "{{ preferences_url }}\n")
    for external_id, address in ADDRESSES.items():
        world.add(external_id, email=address, consent=("email",))
    with world.workers.running():
        world.run("promo")
    world.runtime.close()

    links = sent_links(tmp_path)
    assert set(links) == set(ADDRESSES.values())
    assert links["bob@example.org"] != links["carol@example.net"]

    app = Starlette(routes=web_routes(config=world.config, engine=world.engine, clock=lambda: world.now))
    with TestClient(app, base_url=PUBLIC_URL) as client:
        for address, link in links.items():
            page = client.get(link)
            assert page.status_code == 200
            assert mask_email(address) in page.text  # this recipient's page, no one else's
            others = [mask_email(a) for a in ADDRESSES.values() if a != address]
            assert not any(other in page.text for other in others)
        # Unticking email on Bob's page withdraws Bob's consent, and only his.
        saved = client.post(links["bob@example.org"] + "/preferences", data={"save": "1"})
        assert saved.status_code == 200

    with world.engine.connect() as conn:
        statuses = dict(conn.execute(sa.select(Customer.external_id, Consent.status)
                                     .join(Consent, Consent.customer_id == Customer.id)).all())
    assert statuses == {"C1": "withdrawn", "C2": "granted"}

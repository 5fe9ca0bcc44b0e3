"""The identity part of ``nurture demo`` (issue #15): its customers come from two sources,
the web shop and the store's tills, and end as one customer per person.

The demo imports each source through the code of ``nurture import --source``, merges the
review items of second web shop accounts as an operator would with ``nurture identity
review --merge`` (the demo knows its data: the same phone is the same person there), leaves
the family emails (two people) open for the user to decide, and shows one person held by
both sources with ``nurture customer``'s identifiers table, and ``nurture report
identity``'s omnichannel share.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from rich.table import Table
from sqlalchemy.engine import Engine

from campaigns.config.schema import AppConfig
from campaigns.customers.demo_data import DemoFiles
from campaigns.customers.identity.decisions import list_reviews, merge_review
from campaigns.customers.identity.lookup import resolve_reference
from campaigns.customers.importing.files import import_file
from campaigns.reports.identity import customer_identity, identity_report
from campaigns.store.models import Customer
from workers.cli.common import console
from workers.cli.views import print_identity

#: Who the demo's review decisions are recorded as.
DEMO_ACTOR = "nurture demo"


def import_sources(engine: Engine, cfg: AppConfig, files: DemoFiles) -> None:
    """Import the catalogue, each source's customers, then its orders, then the sign-up
    events, printing what each file did (created, updated, merged, review items opened,
    items whose sku the catalogue does not hold)."""
    report = import_file(engine, "products", files.products)
    console.print(f"   catalogue        {report.imported:>6} products, {len(report.rejected)} rejected  "
                  f"({files.products.name})", highlight=False)
    for source, path in files.customers.items():
        report = import_file(engine, "customers", path, source=source, identity=cfg.identity)
        console.print(f"   {source:<6} customers {report.imported:>6} rows: {report.created} new customers, "
                      f"{report.updated} matched one already imported, {report.merged} merged, "
                      f"{report.reviews_opened} review item(s), {len(report.rejected)} rejected  ({path.name})",
                      highlight=False)
    for source, path in files.orders.items():
        report = import_file(engine, "orders", path, source=source, identity=cfg.identity)
        console.print(f"   {source:<6} orders    {report.imported:>6} imported, {len(report.rejected)} rejected  "
                      f"({path.name})", highlight=False)
        if report.unknown_items:
            console.print(f"                    {report.unknown_items} item(s) name a sku not in the catalogue "
                          f"({', '.join(sorted(report.unknown_skus))}: discontinued), kept", highlight=False)
    report = import_file(engine, "events", files.events, identity=cfg.identity)
    console.print(f"   events           {report.imported:>6} imported, {len(report.rejected)} rejected  "
                  f"({files.events.name}, customers named as id:<source>:<id>)", highlight=False)


def decide_reviews(engine: Engine, files: DemoFiles, *, now: datetime) -> None:
    """Merge the review items of people with two web shop accounts, as an operator would
    (``nurture identity review --merge N``), at ``now`` (the wall clock, like the imports'
    first-seen times). The family emails stay open, for the user to keep apart."""
    one_person = {frozenset((f"online:{first}", f"online:{second}")) for first, second, _ in files.two_accounts}
    merged = 0
    with engine.begin() as conn:
        items = list_reviews(conn)
        for item in items:
            if frozenset((item.customer_external_id, item.other_external_id)) in one_person:
                merge_review(conn, item.id, actor=DEMO_ACTOR, now=now)
                merged += 1
    console.print(f"   review items: {len(items)} opened; {merged} merged as an operator would (`nurture identity "
                  "review --merge N`): a second web shop account under the phone of the first (the shop does not "
                  "verify phones, the till does)", highlight=False)
    console.print(f"   {len(items) - merged} left open, for you to keep apart (`nurture identity review`): a family "
                  "email shared by two people", highlight=False)


def show_one_person(engine: Engine, cfg: AppConfig, files: DemoFiles) -> str | None:
    """Print the identifiers of the person behind ``files.shared_phone`` (what ``nurture
    customer phone:...`` shows) and the omnichannel share per acquisition channel; returns
    the reference used, for the explore hint."""
    if files.shared_phone is not None:
        reference = f"phone:{files.shared_phone}"
        with engine.connect() as conn:
            row_id = resolve_reference(conn, reference, rules=cfg.identity)
            external_id = None if row_id is None else conn.execute(
                sa.select(Customer.external_id).where(Customer.id == row_id)).scalar()
            identity = None if row_id is None else customer_identity(conn, row_id)
        if identity is not None:
            console.print(f"   one person, one customer: `nurture customer {reference}` finds {external_id}, "
                          "holding the ids of both systems (the demo's data is made up, so shown in full)",
                          highlight=False)
            print_identity(identity)
    data = identity_report(engine, zone=ZoneInfo(cfg.profiles.timezone))
    table = Table(title="Omnichannel share by acquisition channel (customers known to both sources)",
                  title_justify="left")
    for column in ("channel", "customers", "in both", "share"):
        table.add_column(column, justify="left" if column == "channel" else "right")
    for row in [*data["omnichannel"], {"channel": "total", **data["omnichannel_total"]}]:
        share = "-" if row["share"] is None else f"{row['share']:.1%}"
        table.add_row(row["channel"], str(row["customers"]), str(row["omnichannel"]), share)
    console.print(table)
    return None if files.shared_phone is None else f"phone:{files.shared_phone}"

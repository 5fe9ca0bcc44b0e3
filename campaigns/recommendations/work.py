"""The temporary tables one computation works in (per connection, dropped at the end).

Each is written once by an ``INSERT ... SELECT`` and read by the later steps; the indexes
are created after the rows, and on PostgreSQL the tables are analysed (autovacuum never
analyses temporary tables, and the self-join's plan depends on their size).
"""

from __future__ import annotations

import sqlalchemy as sa

from campaigns.store.models import Order, ProductAssociation, Recommendation

_TIME = Order.__table__.c.ordered_at.type
_META = sa.MetaData()


def _temp(name: str, *columns: sa.Column) -> sa.Table:
    return sa.Table(name, _META, *columns, prefixes=["TEMPORARY"])


#: One row per customer and product they bought (paid orders before the cutoff).
BUY = _temp(
    "rec_buy",
    sa.Column("customer_id", sa.Integer, nullable=False),
    sa.Column("sku", sa.String(128), nullable=False),
    sa.Column("category", sa.String(128)),
    sa.Column("first_at", _TIME, nullable=False),
    sa.Column("last_at", _TIME, nullable=False),
)
#: Buyers per product.
SKU = _temp("rec_sku", sa.Column("sku", sa.String(128), primary_key=True), sa.Column("buyers", sa.Integer))
#: Every customer's purchase channel: the one they ordered on most, ``*`` (all channels)
#: for a customer without orders or without a known channel.
CHANNEL = _temp("rec_channel", sa.Column("customer_id", sa.Integer, primary_key=True),
                sa.Column("channel", sa.String(32), nullable=False))
#: The share of a customer's distinct products in each category they bought.
AFFINITY = _temp("rec_affinity", sa.Column("customer_id", sa.Integer, nullable=False),
                 sa.Column("category", sa.String(128), nullable=False), sa.Column("weight", sa.Float))
#: In-stock catalogue products by buyers within each channel (``*``: all channels), with
#: their rank within their category and within the channel; only the pools' heads kept.
POPULAR = _temp(
    "rec_popular",
    sa.Column("channel", sa.String(32), nullable=False),
    sa.Column("category", sa.String(128)),
    sa.Column("sku", sa.String(128), nullable=False),
    sa.Column("buyers", sa.Integer),
    sa.Column("category_rank", sa.Integer),
    sa.Column("channel_rank", sa.Integer),
)
#: The head of each antecedent's associations (in-stock consequents, lift above the minimum).
ASSOCIATION_TOP = _temp("rec_association_top", sa.Column("antecedent", sa.String(128), nullable=False),
                        sa.Column("consequent", sa.String(128), nullable=False),
                        sa.Column("category", sa.String(128)), sa.Column("score", sa.Float))
#: Each customer's most recent distinct products (the co-purchase antecedents).
RECENT = _temp("rec_recent", sa.Column("customer_id", sa.Integer, nullable=False),
               sa.Column("sku", sa.String(128), nullable=False))
#: The categories each customer was shown within the recent-category window.
RECENT_SENT = _temp("rec_recent_sent", sa.Column("customer_id", sa.Integer, nullable=False),
                    sa.Column("category", sa.String(128), nullable=False))
#: Every customer's candidates after the exclusions: tier 1 co_purchase, 2 category, 3 popular
#: (a product may come more than once: from several antecedents or tiers).
CANDIDATE = _temp(
    "rec_candidate",
    sa.Column("customer_id", sa.Integer, nullable=False),
    sa.Column("sku", sa.String(128), nullable=False),
    sa.Column("category", sa.String(128)),
    sa.Column("tier", sa.Integer, nullable=False),
    sa.Column("score", sa.Float, nullable=False),
    sa.Column("reason", sa.String(32), nullable=False),
    sa.Column("because_sku", sa.String(128)),
)

#: The customers whose co-purchase candidates alone fill their top N after the exclusions.
FILLED = _temp("rec_filled", sa.Column("customer_id", sa.Integer, primary_key=True))


def shaped_like(table: sa.Table, name: str) -> sa.Table:
    """A temporary table with ``table``'s columns and none of its constraints: a target a
    computation writes into without touching the live table (the refresh's next contents,
    the evaluation's trained model)."""
    return _temp(name, *[sa.Column(column.name, column.type) for column in table.columns])


#: The refresh's next contents of ``product_association`` and ``recommendation``.
NEXT_ASSOCIATIONS = shaped_like(ProductAssociation.__table__, "rec_next_association")
NEXT_RECOMMENDATIONS = shaped_like(Recommendation.__table__, "rec_next_recommendation")
#: The evaluation's popularity baseline.
BASELINE_RECOMMENDATIONS = shaped_like(Recommendation.__table__, "rec_baseline_recommendation")

#: The tables of one computation, in creation order (targets apart).
WORK_TABLES = (BUY, SKU, CHANNEL, AFFINITY, POPULAR, ASSOCIATION_TOP, RECENT, RECENT_SENT, CANDIDATE, FILLED)


def recreate(conn: sa.Connection, table: sa.Table) -> None:
    """Drop ``table`` if this connection has it (an earlier computation that failed), then
    create it empty."""
    table.drop(conn, checkfirst=True)
    table.create(conn)


def index(conn: sa.Connection, table: sa.Table, *columns: str, unique: bool = False) -> None:
    """Index ``table`` on ``columns`` (after its rows are in) and, on PostgreSQL, analyse it."""
    # Plain DDL, not an sa.Index: one would attach itself to the shared Table object, and
    # the next computation's CREATE TABLE would create it a second time.
    name = f"ix_{table.name}_{'_'.join(columns)}"
    conn.exec_driver_sql(f"CREATE {'UNIQUE ' if unique else ''}INDEX {name} ON {table.name} ({', '.join(columns)})")
    analyse(conn, table)


def analyse(conn: sa.Connection, table: sa.Table) -> None:
    """Statistics for the planner on PostgreSQL (SQLite plans by its indexes)."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"ANALYZE {table.name}")


def drop_all(conn: sa.Connection, *tables: sa.Table) -> None:
    """Drop the work tables (and ``tables``) this connection created."""
    for table in (*reversed(WORK_TABLES), *tables):
        table.drop(conn, checkfirst=True)

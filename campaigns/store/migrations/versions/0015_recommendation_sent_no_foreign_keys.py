"""recommendation_sent without its foreign keys to delivery and customer (issue #17, must-have 6)

A worker writes a row per product a message showed, in the batch's record transaction:
three per message. The two keys' per-row checks were 3.4 ms of the 5.5 ms that inserting
one 50-message batch's 150 rows took (EXPLAIN ANALYZE: "Trigger for constraint
recommendation_sent_customer_id_fkey" and "..._delivery_id_fkey", ~11 us per check),
the largest part of what recommendations added to a message. The rows are written only
for deliveries the same transaction marks sent, of their own customer; deliveries are
never deleted, and the one place a customer row goes away, a merge, re-points the
merged customer's rows to the survivor first (it always has: the cascade would have lost
them).

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07
"""

from __future__ import annotations

from alembic import op


revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None

#: SQLite's constraints have no names: the batch copy finds them by this convention.
_SQLITE_NAMES = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table('recommendation_sent', naming_convention=_SQLITE_NAMES) as batch_op:
            batch_op.drop_constraint('fk_recommendation_sent_delivery_id_delivery', type_='foreignkey')
            batch_op.drop_constraint('fk_recommendation_sent_customer_id_customer', type_='foreignkey')
    else:
        op.drop_constraint('recommendation_sent_delivery_id_fkey', 'recommendation_sent', type_='foreignkey')
        op.drop_constraint('recommendation_sent_customer_id_fkey', 'recommendation_sent', type_='foreignkey')


def downgrade() -> None:
    op.execute("DELETE FROM recommendation_sent WHERE delivery_id NOT IN (SELECT id FROM delivery) "
               "OR customer_id NOT IN (SELECT id FROM customer)")
    with op.batch_alter_table('recommendation_sent', schema=None) as batch_op:
        batch_op.create_foreign_key('recommendation_sent_delivery_id_fkey', 'delivery', ['delivery_id'], ['id'],
                                    ondelete='CASCADE')
        batch_op.create_foreign_key('recommendation_sent_customer_id_fkey', 'customer', ['customer_id'], ['id'],
                                    ondelete='CASCADE')

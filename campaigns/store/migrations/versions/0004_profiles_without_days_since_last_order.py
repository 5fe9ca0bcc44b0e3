"""profiles without days_since_last_order

Days since the last order changed every day for every customer, which forced a daily
rewrite of every profile; it is now derived from last_order_at when read.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:

    with op.batch_alter_table('customer_profile', schema=None) as batch_op:
        batch_op.drop_column('days_since_last_order')




def downgrade() -> None:

    with op.batch_alter_table('customer_profile', schema=None) as batch_op:
        batch_op.add_column(sa.Column('days_since_last_order', sa.INTEGER(), nullable=True))



"""coupons: pools of unique codes, each assigned to one message at most

One row per code: its pool, its state (available, assigned, redeemed), the send key of
the delivery it was assigned to (UNIQUE: a message gets one coupon, a retry the same one,
and no two messages share one), the customer and campaign, and the redemption's time
and order. Generated codes are rows too, made when assigned.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'coupon',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('pool', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column('code', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column('send_key', sa.String(length=255), nullable=True),
        sa.Column('customer_id', sa.Integer(), nullable=True),
        sa.Column('campaign', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
        sa.Column('assigned_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column('redeemed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column('order_id', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
        sa.Column('imported_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(['customer_id'], ['customer.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('pool', 'code', name='uq_coupon_pool_code'),
        sa.UniqueConstraint('send_key'),
    )
    op.create_index('ix_coupon_customer_id', 'coupon', ['customer_id'], unique=False)
    op.create_index('ix_coupon_code', 'coupon', ['code'], unique=False)
    op.create_index('ix_coupon_available', 'coupon', ['pool', 'id'], unique=False,
                    postgresql_where=sa.text("status = 'available'"), sqlite_where=sa.text("status = 'available'"))


def downgrade() -> None:
    op.drop_index('ix_coupon_available', table_name='coupon',
                  postgresql_where=sa.text("status = 'available'"), sqlite_where=sa.text("status = 'available'"))
    op.drop_index('ix_coupon_code', table_name='coupon')
    op.drop_index('ix_coupon_customer_id', table_name='coupon')
    op.drop_table('coupon')

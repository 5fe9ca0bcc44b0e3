"""referrals: referral codes and who referred whom

``referral_code``: each customer's code, written when it is first shown, held by the
survivor after a merge. ``referral``: one row per sign-up event that carried a code, with
its referrer, channel, status (pending, rewarded, reversed, refused) and reason, the
referee's first paid order and when the reward was granted or taken back; a customer has
one referrer at most among the rows not refused (a partial UNIQUE index).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'referral_code',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('code', sa.String(length=32), nullable=False),
        sa.Column('customer_id', sa.Integer(), nullable=False),
        sa.Column('origin_id', sa.Integer(), nullable=False),
        sa.Column('issued_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['customer_id'], ['customer.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('code'),
        sa.UniqueConstraint('origin_id'),
    )
    op.create_index('ix_referral_code_customer_id', 'referral_code', ['customer_id'], unique=False)
    op.create_table(
        'referral',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('event_id', sa.Integer(), nullable=False),
        sa.Column('referrer_id', sa.Integer(), nullable=True),
        sa.Column('referee_id', sa.Integer(), nullable=False),
        sa.Column('code', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column('channel', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column('referred_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column('order_id', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
        sa.Column('converted_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column('rewarded_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column('reversed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column('recorded_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['referee_id'], ['customer.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['referrer_id'], ['customer.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('event_id'),
    )
    op.create_index('ix_referral_referrer_id', 'referral', ['referrer_id'], unique=False)
    op.create_index('ix_referral_order', 'referral', ['order_id'], unique=False)
    op.create_index('uq_referral_referee', 'referral', ['referee_id'], unique=True,
                    postgresql_where=sa.text("status <> 'refused'"), sqlite_where=sa.text("status <> 'refused'"))
    op.create_index('ix_referral_unconverted', 'referral', ['referee_id'], unique=False,
                    postgresql_where=sa.text("converted_at IS NULL AND status <> 'refused'"),
                    sqlite_where=sa.text("converted_at IS NULL AND status <> 'refused'"))


def downgrade() -> None:
    op.drop_index('ix_referral_unconverted', table_name='referral',
                  postgresql_where=sa.text("converted_at IS NULL AND status <> 'refused'"),
                  sqlite_where=sa.text("converted_at IS NULL AND status <> 'refused'"))
    op.drop_index('uq_referral_referee', table_name='referral',
                  postgresql_where=sa.text("status <> 'refused'"), sqlite_where=sa.text("status <> 'refused'"))
    op.drop_index('ix_referral_order', table_name='referral')
    op.drop_index('ix_referral_referrer_id', table_name='referral')
    op.drop_table('referral')
    op.drop_index('ix_referral_code_customer_id', table_name='referral_code')
    op.drop_table('referral_code')

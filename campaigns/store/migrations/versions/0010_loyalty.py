"""loyalty: the points ledger, lots, tiers; order status and shipping

Points lots (one per earning source, with its own expiry and redeemable kinds), the
append-only ledger of every change to them, which lots each redemption took from, member
tiers, and how far earning has read orders and events. Orders get a ``status`` (existing
rows are ``paid``) and the ``shipping`` part of their amount.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('points_cursor',
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('last_id', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('source')
    )
    op.create_table('loyalty_member',
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('tier', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('tier_since', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('below_since', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('computed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customer.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('customer_id')
    )
    with op.batch_alter_table('loyalty_member', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_loyalty_member_tier'), ['tier'], unique=False)

    op.create_table('points_lot',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('source_ref', sqlmodel.sql.sqltypes.AutoString(length=160), nullable=False),
    sa.Column('rule', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('points', sa.BigInteger(), nullable=False),
    sa.Column('remaining', sa.BigInteger(), nullable=False),
    sa.Column('spent', sa.BigInteger(), server_default='0', nullable=False),
    sa.Column('kinds', sqlmodel.sql.sqltypes.AutoString(length=400), nullable=False),
    sa.Column('earned_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('expires_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('reversed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.ForeignKeyConstraint(['customer_id'], ['customer.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('source', 'source_ref', name='uq_points_lot_source')
    )
    with op.batch_alter_table('points_lot', schema=None) as batch_op:
        batch_op.create_index('ix_points_lot_customer_expires', ['customer_id', 'expires_at'], unique=False)
        batch_op.create_index('ix_points_lot_open_expires', ['expires_at'], unique=False, postgresql_where=sa.text('remaining > 0'), sqlite_where=sa.text('remaining > 0'))
        batch_op.create_index('ix_points_lot_debts', ['customer_id'], unique=False, postgresql_where=sa.text('remaining < 0'), sqlite_where=sa.text('remaining < 0'))

    op.create_table('points_entry',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('points', sa.BigInteger(), nullable=False),
    sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('source_ref', sqlmodel.sql.sqltypes.AutoString(length=160), nullable=False),
    sa.Column('lot_id', sa.Integer(), nullable=True),
    sa.Column('entry_key', sa.String(length=200), nullable=False),
    sa.Column('detail', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
    sa.Column('occurred_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('recorded_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customer.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['lot_id'], ['points_lot.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('entry_key')
    )
    with op.batch_alter_table('points_entry', schema=None) as batch_op:
        batch_op.create_index('ix_points_entry_customer_occurred', ['customer_id', 'occurred_at'], unique=False)

    op.create_table('points_allocation',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('entry_id', sa.Integer(), nullable=False),
    sa.Column('lot_id', sa.Integer(), nullable=False),
    sa.Column('points', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['entry_id'], ['points_entry.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['lot_id'], ['points_lot.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('points_allocation', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_points_allocation_entry_id'), ['entry_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_points_allocation_lot_id'), ['lot_id'], unique=False)

    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('status', sa.String(length=16), server_default='paid', nullable=False))
        batch_op.add_column(sa.Column('shipping', sa.Numeric(precision=14, scale=2, asdecimal=False), nullable=True))
        batch_op.create_index('ix_orders_not_paid', ['status'], unique=False,
                              postgresql_where=sa.text("status <> 'paid'"), sqlite_where=sa.text("status <> 'paid'"))



def downgrade() -> None:
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_index('ix_orders_not_paid', postgresql_where=sa.text("status <> 'paid'"),
                            sqlite_where=sa.text("status <> 'paid'"))
        batch_op.drop_column('shipping')
        batch_op.drop_column('status')

    with op.batch_alter_table('points_allocation', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_points_allocation_lot_id'))
        batch_op.drop_index(batch_op.f('ix_points_allocation_entry_id'))

    op.drop_table('points_allocation')
    with op.batch_alter_table('points_entry', schema=None) as batch_op:
        batch_op.drop_index('ix_points_entry_customer_occurred')

    op.drop_table('points_entry')
    with op.batch_alter_table('points_lot', schema=None) as batch_op:
        batch_op.drop_index('ix_points_lot_debts', postgresql_where=sa.text('remaining < 0'), sqlite_where=sa.text('remaining < 0'))
        batch_op.drop_index('ix_points_lot_open_expires', postgresql_where=sa.text('remaining > 0'), sqlite_where=sa.text('remaining > 0'))
        batch_op.drop_index('ix_points_lot_customer_expires')

    op.drop_table('points_lot')
    with op.batch_alter_table('loyalty_member', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_loyalty_member_tier'))

    op.drop_table('loyalty_member')
    op.drop_table('points_cursor')

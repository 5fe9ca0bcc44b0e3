"""customer profiles and transitions

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table('customer_profile',
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('as_of', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('first_order_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('last_order_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('orders_count', sa.Integer(), nullable=False),
    sa.Column('total_spent', sa.Numeric(precision=16, scale=2, asdecimal=False), nullable=False),
    sa.Column('avg_order_value', sa.Numeric(precision=16, scale=2, asdecimal=False), nullable=True),
    sa.Column('days_since_last_order', sa.Integer(), nullable=True),
    sa.Column('r_score', sa.Integer(), nullable=True),
    sa.Column('f_score', sa.Integer(), nullable=True),
    sa.Column('m_score', sa.Integer(), nullable=True),
    sa.Column('rfm_segment', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('stage', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('stage_since', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('previous_stage', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
    sa.Column('previous_rfm_segment', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('computed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customer.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('customer_id')
    )
    with op.batch_alter_table('customer_profile', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_customer_profile_rfm_segment'), ['rfm_segment'], unique=False)
        batch_op.create_index(batch_op.f('ix_customer_profile_stage'), ['stage'], unique=False)

    op.create_table('profile_transition',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('value', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('previous', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
    sa.Column('entered_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customer.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('profile_transition', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_profile_transition_customer_id'), ['customer_id'], unique=False)
        batch_op.create_index('ix_transition_kind_value_entered', ['kind', 'value', 'entered_at'], unique=False)




def downgrade() -> None:

    with op.batch_alter_table('profile_transition', schema=None) as batch_op:
        batch_op.drop_index('ix_transition_kind_value_entered')
        batch_op.drop_index(batch_op.f('ix_profile_transition_customer_id'))

    op.drop_table('profile_transition')
    with op.batch_alter_table('customer_profile', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_customer_profile_stage'))
        batch_op.drop_index(batch_op.f('ix_customer_profile_rfm_segment'))

    op.drop_table('customer_profile')


"""delivery receipts

Provider receipts (delivered, undelivered, bounced, blocked) are kept on the delivery,
and receipts find their delivery by the provider's message id.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.add_column(sa.Column('receipt_status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True))
        batch_op.add_column(sa.Column('receipt_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.create_index('ix_delivery_provider_message_id', ['provider_message_id'], unique=False,
                              postgresql_where=sa.text('provider_message_id IS NOT NULL'),
                              sqlite_where=sa.text('provider_message_id IS NOT NULL'))


def downgrade() -> None:
    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.drop_index('ix_delivery_provider_message_id',
                            postgresql_where=sa.text('provider_message_id IS NOT NULL'),
                            sqlite_where=sa.text('provider_message_id IS NOT NULL'))
        batch_op.drop_column('receipt_at')
        batch_op.drop_column('receipt_status')

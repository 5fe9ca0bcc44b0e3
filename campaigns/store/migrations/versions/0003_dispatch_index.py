"""Dispatch by a partial index on queued rows; wider send keys; no run foreign key

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24

The scheduler used to page queued rows by (status, due_at) and re-mark them enqueued,
which at a million planned rows read every queued row on every page. ``dispatch_after``
with a partial index on queued rows makes a tick cost what it dispatches.
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# SQLite's batch mode needs names for the unnamed constraints of revision 0001.
NAMING = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}
QUEUED = sa.text("status = 'queued'")
HAS_TOKEN = sa.text("claim_token IS NOT NULL")


def upgrade() -> None:
    bind = op.get_bind()
    with op.batch_alter_table("delivery", naming_convention=NAMING) as batch_op:
        batch_op.add_column(sa.Column("dispatch_after", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.alter_column("send_key", existing_type=sa.String(64), type_=sa.String(255), existing_nullable=False)
        batch_op.drop_index("ix_delivery_status_due")
        batch_op.drop_index("ix_delivery_claim_token")
        if bind.dialect.name == "postgresql":
            batch_op.drop_constraint("delivery_run_id_fkey", type_="foreignkey")
        else:
            batch_op.drop_constraint("fk_delivery_run_id_campaign_run", type_="foreignkey")
    # Everything still queued becomes dispatchable at its due time; claims make a second
    # enqueue of a row already in the broker harmless.
    op.execute("UPDATE delivery SET dispatch_after = due_at")
    with op.batch_alter_table("delivery") as batch_op:
        batch_op.alter_column("dispatch_after", existing_type=sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False)
        batch_op.drop_column("enqueued_at")
    op.create_index("ix_delivery_dispatch", "delivery", ["dispatch_after", "id"],
                    postgresql_where=QUEUED, sqlite_where=QUEUED)
    op.create_index("ix_delivery_claim_token", "delivery", ["claim_token"],
                    postgresql_where=HAS_TOKEN, sqlite_where=HAS_TOKEN)


def downgrade() -> None:
    op.drop_index("ix_delivery_claim_token", table_name="delivery")
    op.drop_index("ix_delivery_dispatch", table_name="delivery")
    with op.batch_alter_table("delivery") as batch_op:
        batch_op.add_column(sa.Column("enqueued_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.drop_column("dispatch_after")
        batch_op.alter_column("send_key", existing_type=sa.String(255), type_=sa.String(64), existing_nullable=False)
        batch_op.create_foreign_key("fk_delivery_run_id_campaign_run", "campaign_run", ["run_id"], ["id"])
        batch_op.create_index("ix_delivery_claim_token", ["claim_token"], unique=False)
        batch_op.create_index("ix_delivery_status_due", ["status", "due_at"], unique=False)

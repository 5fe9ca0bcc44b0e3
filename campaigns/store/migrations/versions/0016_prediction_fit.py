"""prediction_fit: the fits of the purchase models (issue #18)

One row per fit of BG/NBD and Gamma-Gamma on the buyers' history as of a day: the
parameters, log-likelihoods, sample sizes and whether the fit is usable (``fitted``) or
why not (``not_converged``, ``too_few``), so a failed fit leaves the previous one current
and says so.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('prediction_fit',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('as_of', sa.Date(), nullable=False),
    sa.Column('fitted_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('customers', sa.Integer(), nullable=False),
    sa.Column('repeaters', sa.Integer(), nullable=False),
    sa.Column('bgnbd', sa.JSON(), nullable=True),
    sa.Column('bgnbd_log_likelihood', sa.Float(), nullable=True),
    sa.Column('gamma_gamma', sa.JSON(), nullable=True),
    sa.Column('gamma_gamma_log_likelihood', sa.Float(), nullable=True),
    sa.Column('gamma_gamma_customers', sa.Integer(), nullable=False),
    sa.Column('message', sqlmodel.sql.sqltypes.AutoString(length=512), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('prediction_fit', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_prediction_fit_as_of'), ['as_of'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('prediction_fit', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_prediction_fit_as_of'))

    op.drop_table('prediction_fit')

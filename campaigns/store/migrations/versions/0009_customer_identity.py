"""customer identity

Identifiers (``id``, ``phone``, ``email``, ``openid``, ``unionid``), unique across customers;
the merges that joined two customers into one (with what they moved, to unmerge exactly);
and review items for weak matches. Existing customers get their ``external_id`` as an
``id`` identifier, and their email, phone and WeChat openid where no earlier customer
holds the same one: a database imported before this version keeps working unchanged.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'customer_identifier',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('customer_id', sa.Integer(), nullable=False),
        sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column('value', sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
        sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column('verified', sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column('first_seen_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('last_seen_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(['customer_id'], ['customer.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('kind', 'value', name='uq_identifier_kind_value'),
    )
    op.create_index('ix_customer_identifier_customer_id', 'customer_identifier', ['customer_id'], unique=False)
    op.create_table(
        'customer_merge',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('survivor_id', sa.Integer(), nullable=False),
        sa.Column('merged_id', sa.Integer(), nullable=False),
        sa.Column('merged_external_id', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column('actor', sqlmodel.sql.sqltypes.AutoString(length=128), nullable=False),
        sa.Column('merged_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('moved', sa.JSON(), nullable=False),
        sa.Column('removed', sa.JSON(), nullable=False),
        sa.Column('changed', sa.JSON(), nullable=False),
        sa.Column('unmerged_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint('id'),
    )
    op.create_index('ix_customer_merge_survivor_id', 'customer_merge', ['survivor_id'], unique=False)
    op.create_index('ix_customer_merge_merged_id', 'customer_merge', ['merged_id'], unique=False)
    op.create_table(
        'identity_review',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('customer_id', sa.Integer(), nullable=False),
        sa.Column('other_customer_id', sa.Integer(), nullable=False),
        sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column('value', sqlmodel.sql.sqltypes.AutoString(length=320), nullable=False),
        sa.Column('source', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True),
        sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column('opened_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column('decided_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(['customer_id'], ['customer.id'], ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['other_customer_id'], ['customer.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('customer_id', 'other_customer_id', name='uq_review_pair'),
    )
    op.create_index('ix_identity_review_customer_id', 'identity_review', ['customer_id'], unique=False)
    op.create_index('ix_identity_review_other_customer_id', 'identity_review', ['other_customer_id'], unique=False)

    # Backfill: every customer is found by its own external_id; email, phone and openid
    # go to the first customer (lowest row id) holding each, in the stored form (the
    # import's normalisation applies to what is imported from now on).
    op.execute(
        "INSERT INTO customer_identifier (customer_id, kind, value, source, verified, first_seen_at, last_seen_at) "
        "SELECT id, 'id', external_id, NULL, false, created_at, updated_at FROM customer"
    )
    for kind, column, value in (
        ("email", "email", "lower(trim(email))"),
        ("phone", "phone", "phone"),
        ("openid", "wechat_openid", "'wechat:' || wechat_openid"),
    ):
        op.execute(
            "INSERT INTO customer_identifier (customer_id, kind, value, source, verified, first_seen_at, last_seen_at) "
            f"SELECT MIN(id), '{kind}', {value}, NULL, false, MIN(created_at), MAX(updated_at) FROM customer "
            f"WHERE {column} IS NOT NULL AND {column} <> '' GROUP BY {value}"
        )


def downgrade() -> None:
    op.drop_index('ix_identity_review_other_customer_id', table_name='identity_review')
    op.drop_index('ix_identity_review_customer_id', table_name='identity_review')
    op.drop_table('identity_review')
    op.drop_index('ix_customer_merge_merged_id', table_name='customer_merge')
    op.drop_index('ix_customer_merge_survivor_id', table_name='customer_merge')
    op.drop_table('customer_merge')
    op.drop_index('ix_customer_identifier_customer_id', table_name='customer_identifier')
    op.drop_table('customer_identifier')

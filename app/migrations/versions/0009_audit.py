"""The audit trail: who changed what (before/after), when, in which request.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'audit',
        sa.Column('id', sa.BigInteger(), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.Column('action', sa.String(length=32), nullable=False),
        sa.Column('entity', sa.String(length=32), nullable=False),
        sa.Column('entity_id', sa.String(length=100), nullable=False),
        sa.Column('key_id', sa.String(length=100), nullable=True),
        sa.Column('actor', sa.String(length=254), nullable=True),
        sa.Column('request_id', sa.String(length=128), nullable=True),
        sa.Column('before', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column('after', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_audit')),
    )
    op.create_index('ix_audit_entity_entity_id_id', 'audit', ['entity', 'entity_id', 'id'], unique=False)
    op.create_index('ix_audit_key_id_id', 'audit', ['key_id', 'id'], unique=False)


def downgrade():
    op.drop_index('ix_audit_key_id_id', table_name='audit')
    op.drop_index('ix_audit_entity_entity_id_id', table_name='audit')
    op.drop_table('audit')

"""Stray blobs: the copies a direct upload stored before its request committed, noted first on a connection of
their own, so a process killed in between leaves a row that the sweep follows to the blob.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa


revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'stray_blobs',
        sa.Column('path', sa.Text(), nullable=False),
        sa.Column('at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.PrimaryKeyConstraint('path', name=op.f('pk_stray_blobs')),
    )
    op.create_index('ix_stray_blobs_at', 'stray_blobs', ['at'])


def downgrade():
    op.drop_index('ix_stray_blobs_at', table_name='stray_blobs')
    op.drop_table('stray_blobs')

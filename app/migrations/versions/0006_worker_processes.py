"""Worker processes: the host and pid behind each procrastinate worker row.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('worker_processes',
    sa.Column('worker_id', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('host', sa.String(length=255), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.PrimaryKeyConstraint('worker_id', name=op.f('pk_worker_processes'))
    )


def downgrade():
    op.drop_table('worker_processes')

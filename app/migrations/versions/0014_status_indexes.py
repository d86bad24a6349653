"""Image sets and campaigns listed by status (GET /image_sets?status=, GET /campaigns?status=): an index on
(status, id) serves the filter, its order and the page's total.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02
"""
from alembic import op


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade():
    op.create_index('ix_image_sets_status_id', 'image_sets', ['status', 'id'])
    op.create_index('ix_campaigns_status_id', 'campaigns', ['status', 'id'])


def downgrade():
    op.drop_index('ix_campaigns_status_id', table_name='campaigns')
    op.drop_index('ix_image_sets_status_id', table_name='image_sets')

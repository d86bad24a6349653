"""Deleting, retiring and archiving: an image's status (active, retired, deleting) and when it was retired, image
sets that are being deleted, archived campaigns, and the indexes that keep listings and blocker look-ups
index-served.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade():
    # A constant default: PostgreSQL adds the column without rewriting the table.
    op.add_column('images', sa.Column('status', sa.String(length=16), server_default='active', nullable=False))
    op.add_column('images', sa.Column('retired_at', sa.DateTime(timezone=True), nullable=True))
    op.create_check_constraint(op.f('ck_images_status'), 'images', "status IN ('active', 'retired', 'deleting')")
    op.create_index('ix_images_listed_id', 'images', ['id'], postgresql_where=sa.text("status = 'active'"))
    op.create_index('ix_images_hidden_id', 'images', ['id'], postgresql_where=sa.text("status <> 'active'"))

    op.drop_constraint(op.f('ck_image_sets_status'), 'image_sets', type_='check')
    op.create_check_constraint(op.f('ck_image_sets_status'), 'image_sets',
                               "status IN ('created', 'finishing', 'finished', 'failed', 'deleting')")

    op.add_column('campaigns', sa.Column('date_archived', sa.DateTime(timezone=True), nullable=True))
    op.drop_constraint(op.f('ck_campaigns_status'), 'campaigns', type_='check')
    op.create_check_constraint(op.f('ck_campaigns_status'), 'campaigns',
                               "status IN ('created', 'active', 'completed', 'finished', 'archived')")

    op.create_index('ix_dataset_images_image_id', 'dataset_images', ['image_id'])


def downgrade():
    op.drop_index('ix_dataset_images_image_id', table_name='dataset_images')

    op.execute("UPDATE campaigns SET status = 'finished' WHERE status = 'archived'")
    op.drop_constraint(op.f('ck_campaigns_status'), 'campaigns', type_='check')
    op.create_check_constraint(op.f('ck_campaigns_status'), 'campaigns',
                               "status IN ('created', 'active', 'completed', 'finished')")
    op.drop_column('campaigns', 'date_archived')

    op.execute("UPDATE image_sets SET status = 'finished' WHERE status = 'deleting'")
    op.drop_constraint(op.f('ck_image_sets_status'), 'image_sets', type_='check')
    op.create_check_constraint(op.f('ck_image_sets_status'), 'image_sets',
                               "status IN ('created', 'finishing', 'finished', 'failed')")

    op.drop_index('ix_images_hidden_id', table_name='images')
    op.drop_index('ix_images_listed_id', table_name='images')
    op.drop_constraint(op.f('ck_images_status'), 'images', type_='check')
    op.drop_column('images', 'retired_at')
    op.drop_column('images', 'status')

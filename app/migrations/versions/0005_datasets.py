"""Datasets: versions of a campaign's labels (a snapshot of label revisions), exported and registered.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-21
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('datasets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('folder', sa.Text(), nullable=False),
    sa.Column('annotations_sha256', sa.String(length=64), nullable=True),
    sa.Column('image_count', sa.Integer(), nullable=True),
    sa.Column('object_count', sa.Integer(), nullable=True),
    sa.Column('azureml_labels_id', sa.Text(), nullable=True),
    sa.Column('azureml_images_id', sa.Text(), nullable=True),
    sa.Column('created_by', sa.String(length=254), nullable=True),
    sa.Column('date_created', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('date_exported', sa.DateTime(timezone=True), nullable=True),
    sa.Column('date_registered', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('pending', 'exported', 'registered', 'failed')", name=op.f('ck_datasets_status')),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_datasets_campaign_id_campaigns'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_datasets')),
    sa.UniqueConstraint('campaign_id', 'version', name='uq_datasets_campaign_id_version')
    )
    op.create_table('dataset_images',
    sa.Column('dataset_id', sa.Integer(), nullable=False),
    sa.Column('image_id', sa.Integer(), nullable=False),
    sa.Column('revision_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['dataset_id'], ['datasets.id'], name=op.f('fk_dataset_images_dataset_id_datasets'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['image_id'], ['images.id'], name=op.f('fk_dataset_images_image_id_images'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['revision_id'], ['label_revisions.id'], name=op.f('fk_dataset_images_revision_id_label_revisions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('dataset_id', 'image_id', name=op.f('pk_dataset_images'))
    )


def downgrade():
    op.drop_table('dataset_images')
    op.drop_table('datasets')

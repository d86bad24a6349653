"""Labelling campaigns: their images, labelers' key bindings, and labels kept as revisions (never overwritten).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-21
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('campaigns',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('title', sa.String(length=128), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('metadata', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('label_translations', postgresql.JSONB(astext_type=sa.Text()), nullable=True),
    sa.Column('labels', postgresql.ARRAY(sa.Text()), nullable=True),
    sa.Column('labeler_id', sa.Integer(), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('date_created', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('date_started', sa.DateTime(timezone=True), nullable=True),
    sa.Column('date_completed', sa.DateTime(timezone=True), nullable=True),
    sa.Column('date_finished', sa.DateTime(timezone=True), nullable=True),
    sa.Column('progress_total', sa.Integer(), nullable=False),
    sa.Column('progress_done', sa.Integer(), nullable=False),
    sa.CheckConstraint("status IN ('created', 'active', 'completed', 'finished')", name=op.f('ck_campaigns_status')),
    sa.ForeignKeyConstraint(['created_by_id'], ['principals.id'], name=op.f('fk_campaigns_created_by_id_principals'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['labeler_id'], ['principals.id'], name=op.f('fk_campaigns_labeler_id_principals')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_campaigns')),
    sa.UniqueConstraint('title', name=op.f('uq_campaigns_title'))
    )
    op.create_table('api_key_campaigns',
    sa.Column('api_key_id', sa.Integer(), nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['api_key_id'], ['api_keys.id'], name=op.f('fk_api_key_campaigns_api_key_id_api_keys'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_api_key_campaigns_campaign_id_campaigns'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('api_key_id', 'campaign_id', name=op.f('pk_api_key_campaigns'))
    )
    op.create_index(op.f('ix_api_key_campaigns_campaign_id'), 'api_key_campaigns', ['campaign_id'], unique=False)
    op.create_table('label_revisions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('image_id', sa.Integer(), nullable=False),
    sa.Column('revision', sa.Integer(), nullable=False),
    sa.Column('submitted_by', sa.String(length=254), nullable=False),
    sa.Column('key_id', sa.String(length=32), nullable=False),
    sa.Column('request_id', sa.String(length=128), nullable=True),
    sa.Column('object_count', sa.Integer(), nullable=False),
    sa.Column('date_submitted', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_label_revisions_campaign_id_campaigns'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['image_id'], ['images.id'], name=op.f('fk_label_revisions_image_id_images'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_label_revisions')),
    sa.UniqueConstraint('campaign_id', 'image_id', 'revision', name='uq_label_revisions_revision')
    )
    op.create_table('campaign_images',
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('image_id', sa.Integer(), nullable=False),
    sa.Column('current_revision_id', sa.Integer(), nullable=True),
    sa.Column('date_added', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], name=op.f('fk_campaign_images_campaign_id_campaigns'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['current_revision_id'], ['label_revisions.id'], name=op.f('fk_campaign_images_current_revision_id_label_revisions'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['image_id'], ['images.id'], name=op.f('fk_campaign_images_image_id_images'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('campaign_id', 'image_id', name=op.f('pk_campaign_images'))
    )
    op.create_index(op.f('ix_campaign_images_image_id'), 'campaign_images', ['image_id'], unique=False)
    op.create_table('objects',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('revision_id', sa.Integer(), nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('image_id', sa.Integer(), nullable=False),
    sa.Column('label', sa.Text(), nullable=False),
    sa.Column('label_original', sa.Text(), nullable=False),
    sa.Column('box_xmin', sa.Double(), nullable=False),
    sa.Column('box_xmax', sa.Double(), nullable=False),
    sa.Column('box_ymin', sa.Double(), nullable=False),
    sa.Column('box_ymax', sa.Double(), nullable=False),
    sa.Column('confidence', sa.Double(), nullable=True),
    sa.Column('is_crowd', sa.Boolean(), nullable=False),
    sa.Column('date_added', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
    sa.Column('added_by', sa.String(length=254), nullable=False),
    sa.CheckConstraint('confidence IS NULL OR (confidence >= 0 AND confidence <= 1)', name=op.f('ck_objects_confidence')),
    sa.CheckConstraint('box_xmin < box_xmax AND box_ymin < box_ymax', name=op.f('ck_objects_box')),
    sa.ForeignKeyConstraint(['revision_id'], ['label_revisions.id'], name=op.f('fk_objects_revision_id_label_revisions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_objects'))
    )
    op.create_index('ix_objects_revision_id', 'objects', ['revision_id'], unique=False)


def downgrade():
    op.drop_index('ix_objects_revision_id', table_name='objects')
    op.drop_table('objects')
    op.drop_index(op.f('ix_campaign_images_image_id'), table_name='campaign_images')
    op.drop_table('campaign_images')
    op.drop_table('label_revisions')
    op.drop_index(op.f('ix_api_key_campaigns_campaign_id'), table_name='api_key_campaigns')
    op.drop_table('api_key_campaigns')
    op.drop_table('campaigns')

"""Coming from LabelAPI: key ids up to 100 characters, legacy bcrypt hashes, images whose facts are not read
yet, and the backfill's state per imported image.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade():
    op.alter_column('api_keys', 'key_id', existing_type=sa.String(length=32), type_=sa.String(length=100),
                    existing_nullable=False)
    op.alter_column('label_revisions', 'key_id', existing_type=sa.String(length=32), type_=sa.String(length=100),
                    existing_nullable=False)
    op.add_column('api_keys', sa.Column('legacy_secret_hash', sa.LargeBinary(), nullable=True))
    for column, type_ in (('md5', sa.String(length=32)), ('filetype', sa.String(length=16)),
                          ('filesize', sa.BigInteger()), ('width', sa.Integer()), ('height', sa.Integer())):
        op.alter_column('images', column, existing_type=type_, nullable=True)
    op.create_table('labelapi_images',
    sa.Column('image_id', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=16), server_default='pending', nullable=False),
    sa.Column('duplicate_of', sa.Integer(), nullable=True),
    sa.Column('problem', sa.Text(), nullable=True),
    sa.Column('date_checked', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("state IN ('pending', 'done', 'missing', 'duplicate', 'unreadable')",
                       name=op.f('ck_labelapi_images_state')),
    sa.ForeignKeyConstraint(['image_id'], ['images.id'], name=op.f('fk_labelapi_images_image_id_images'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('image_id', name=op.f('pk_labelapi_images'))
    )
    op.create_index('ix_labelapi_images_pending', 'labelapi_images', ['image_id'],
                    postgresql_where=sa.text("state = 'pending'"))


def downgrade():
    op.drop_index('ix_labelapi_images_pending', table_name='labelapi_images')
    op.drop_table('labelapi_images')
    op.execute("DELETE FROM images WHERE md5 IS NULL OR filetype IS NULL OR filesize IS NULL OR width IS NULL "
               "OR height IS NULL")
    for column, type_ in (('md5', sa.String(length=32)), ('filetype', sa.String(length=16)),
                          ('filesize', sa.BigInteger()), ('width', sa.Integer()), ('height', sa.Integer())):
        op.alter_column('images', column, existing_type=type_, nullable=False)
    op.drop_column('api_keys', 'legacy_secret_hash')
    op.alter_column('label_revisions', 'key_id', existing_type=sa.String(length=100), type_=sa.String(length=32),
                    existing_nullable=False)
    op.alter_column('api_keys', 'key_id', existing_type=sa.String(length=100), type_=sa.String(length=32),
                    existing_nullable=False)

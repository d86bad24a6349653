"""Who minted each API key (null: the service itself: the bootstrap admin, `make run`'s first admin, keys
imported from LabelAPI), so a key's labels can be told from its owner's other keys.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""
from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('api_keys', sa.Column('created_by_id', sa.Integer(), nullable=True))
    op.create_foreign_key(op.f('fk_api_keys_created_by_id_principals'), 'api_keys', 'principals',
                          ['created_by_id'], ['id'], ondelete='SET NULL')


def downgrade():
    op.drop_constraint(op.f('fk_api_keys_created_by_id_principals'), 'api_keys', type_='foreignkey')
    op.drop_column('api_keys', 'created_by_id')

"""Every way in: per-set validation rules, a `failed` outcome and the source of each report row, renditions
on images, the per-minute ingest counters, URL imports with one row per URL, and finishing split into chunks.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""
from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('image_sets', sa.Column('validation', postgresql.JSONB(astext_type=sa.Text()), nullable=True))
    op.add_column('image_sets', sa.Column('progress_failed', sa.Integer(), server_default='0', nullable=False))

    # A report row per file, whatever the source. Dropbox names are unique in a set (the resume marker);
    # direct uploads may repeat a name (a device sending "image.jpg" each time).
    op.add_column('finish_reports', sa.Column('source', sa.String(length=16), server_default='dropbox',
                                              nullable=False))
    op.drop_constraint(op.f('ck_finish_reports_outcome'), 'finish_reports', type_='check')
    op.create_check_constraint(op.f('ck_finish_reports_outcome'), 'finish_reports',
                               "outcome IN ('accepted', 'duplicate', 'rejected', 'failed')")
    op.drop_constraint('uq_finish_reports_imageset_id_name', 'finish_reports', type_='unique')
    op.create_index('uq_finish_reports_dropbox_name', 'finish_reports', ['imageset_id', 'name'], unique=True,
                    postgresql_where=sa.text("source = 'dropbox'"))
    op.create_index('ix_finish_reports_imageset_id_name_id', 'finish_reports', ['imageset_id', 'name', 'id'])
    op.create_index('ix_finish_reports_imageset_id_outcome_name_id', 'finish_reports',
                    ['imageset_id', 'outcome', 'name', 'id'])

    op.add_column('images', sa.Column('renditions', postgresql.ARRAY(sa.String(length=32)), server_default='{}',
                                      nullable=False))

    op.create_table(
        'ingest_minutes',
        sa.Column('minute', sa.DateTime(timezone=True), nullable=False),
        sa.Column('source', sa.String(length=16), nullable=False),
        sa.Column('outcome', sa.String(length=16), nullable=False),
        sa.Column('count', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('minute', 'source', 'outcome', name=op.f('pk_ingest_minutes')),
    )
    # What finish_reports already hold, so the histogram keeps its history.
    op.execute("""
        INSERT INTO ingest_minutes (minute, source, outcome, count)
        SELECT date_trunc('minute', date_processed), 'dropbox', outcome, count(*)
        FROM finish_reports GROUP BY 1, 3""")

    op.create_table(
        'url_imports',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('imageset_id', sa.Integer(), nullable=False),
        sa.Column('status', sa.String(length=16), server_default='queued', nullable=False),
        sa.Column('total', sa.Integer(), nullable=False),
        sa.Column('accepted', sa.Integer(), server_default='0', nullable=False),
        sa.Column('duplicates', sa.Integer(), server_default='0', nullable=False),
        sa.Column('rejected', sa.Integer(), server_default='0', nullable=False),
        sa.Column('failed', sa.Integer(), server_default='0', nullable=False),
        sa.Column('error', sa.Text(), nullable=True),
        sa.Column('created_by_id', sa.Integer(), nullable=True),
        sa.Column('date_created', sa.DateTime(timezone=True), server_default=sa.text('now()'), nullable=False),
        sa.Column('date_finished', sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('queued', 'running', 'finished', 'failed')", name=op.f('ck_url_imports_status')),
        sa.ForeignKeyConstraint(['imageset_id'], ['image_sets.id'], name=op.f('fk_url_imports_imageset_id_image_sets'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['created_by_id'], ['principals.id'],
                                name=op.f('fk_url_imports_created_by_id_principals'), ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_url_imports')),
    )
    op.create_index('ix_url_imports_imageset_id', 'url_imports', ['imageset_id'])
    op.create_table(
        'url_import_items',
        sa.Column('import_id', sa.Integer(), nullable=False),
        sa.Column('position', sa.Integer(), nullable=False),
        sa.Column('url', sa.Text(), nullable=False),
        sa.Column('outcome', sa.String(length=16), nullable=True),
        sa.Column('image_id', sa.Integer(), nullable=True),
        sa.Column('reason', sa.Text(), nullable=True),
        sa.Column('http_status', sa.SmallInteger(), nullable=True),
        sa.Column('date_processed', sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("outcome IN ('accepted', 'duplicate', 'rejected', 'failed')",
                           name=op.f('ck_url_import_items_outcome')),
        sa.ForeignKeyConstraint(['import_id'], ['url_imports.id'], name=op.f('fk_url_import_items_import_id_url_imports'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['image_id'], ['images.id'], name=op.f('fk_url_import_items_image_id_images'),
                                ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('import_id', 'position', name=op.f('pk_url_import_items')),
    )
    op.create_index('ix_url_import_items_pending', 'url_import_items', ['import_id', 'position'],
                    postgresql_where=sa.text('outcome IS NULL'))

    # Finishing a big set: the upload area's listing pages become chunks that any worker may take.
    op.create_table(
        'finish_chunks',
        sa.Column('imageset_id', sa.Integer(), nullable=False),
        sa.Column('chunk', sa.Integer(), nullable=False),
        sa.Column('continuation_token', sa.Text(), nullable=True),
        sa.Column('last_name', sa.Text(), nullable=False),
        sa.Column('files', sa.Integer(), nullable=False),
        sa.Column('done', sa.Boolean(), server_default='false', nullable=False),
        sa.ForeignKeyConstraint(['imageset_id'], ['image_sets.id'],
                                name=op.f('fk_finish_chunks_imageset_id_image_sets'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('imageset_id', 'chunk', name=op.f('pk_finish_chunks')),
    )


def downgrade():
    op.drop_table('finish_chunks')
    op.drop_index('ix_url_import_items_pending', table_name='url_import_items')
    op.drop_table('url_import_items')
    op.drop_index('ix_url_imports_imageset_id', table_name='url_imports')
    op.drop_table('url_imports')
    op.drop_table('ingest_minutes')
    op.drop_column('images', 'renditions')
    op.drop_index('ix_finish_reports_imageset_id_outcome_name_id', table_name='finish_reports')
    op.drop_index('ix_finish_reports_imageset_id_name_id', table_name='finish_reports')
    op.drop_index('uq_finish_reports_dropbox_name', table_name='finish_reports')
    op.execute("DELETE FROM finish_reports WHERE source <> 'dropbox' OR outcome = 'failed'")
    op.create_unique_constraint('uq_finish_reports_imageset_id_name', 'finish_reports', ['imageset_id', 'name'])
    op.drop_constraint(op.f('ck_finish_reports_outcome'), 'finish_reports', type_='check')
    op.create_check_constraint(op.f('ck_finish_reports_outcome'), 'finish_reports', "outcome IN ('accepted', 'duplicate', 'rejected')")
    op.drop_column('finish_reports', 'source')
    op.drop_column('image_sets', 'progress_failed')
    op.drop_column('image_sets', 'validation')

"""Image sets, images, set membership, finishing reports, and uploader keys' bindings to image sets.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""
import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "image_sets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(128), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("metadata", postgresql.JSONB(), nullable=True),
        sa.Column("blobstorage_path", sa.Text(), nullable=False),
        sa.Column("upload_container", sa.String(63), nullable=False),
        sa.Column("date_created", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("date_finished", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("progress_total", sa.Integer(), nullable=True),
        sa.Column("progress_accepted", sa.Integer(), nullable=False),
        sa.Column("progress_duplicates", sa.Integer(), nullable=False),
        sa.Column("progress_rejected", sa.Integer(), nullable=False),
        sa.CheckConstraint("status IN ('created', 'finishing', 'finished', 'failed')", name=op.f("ck_image_sets_status")),
        sa.ForeignKeyConstraint(["created_by_id"], ["principals.id"], ondelete="SET NULL",
                                name=op.f("fk_image_sets_created_by_id_principals")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_image_sets")),
        sa.UniqueConstraint("title", name=op.f("uq_image_sets_title")),
        sa.UniqueConstraint("upload_container", name=op.f("uq_image_sets_upload_container")),
    )
    op.create_table(
        "images",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("imageset_id", sa.Integer(), nullable=True),
        sa.Column("blobstorage_path", sa.Text(), nullable=False),
        sa.Column("md5", sa.String(32), nullable=False),
        sa.Column("type", sa.String(64), nullable=True),
        sa.Column("metadata", postgresql.JSONB(), nullable=True),
        sa.Column("tss_id", sa.String(64), nullable=True),
        sa.Column("filetype", sa.String(16), nullable=False),
        sa.Column("filesize", sa.BigInteger(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("date_taken", sa.DateTime(timezone=True), nullable=True),
        sa.Column("location_description", sa.Text(), nullable=True),
        sa.Column("lat", sa.Double(), nullable=True),
        sa.Column("lon", sa.Double(), nullable=True),
        sa.Column("camera_make", sa.String(128), nullable=True),
        sa.Column("camera_model", sa.String(128), nullable=True),
        sa.Column("exif", postgresql.JSONB(), nullable=True),
        sa.Column("date_added", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(["imageset_id"], ["image_sets.id"], ondelete="SET NULL",
                                name=op.f("fk_images_imageset_id_image_sets")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_images")),
        sa.UniqueConstraint("blobstorage_path", name=op.f("uq_images_blobstorage_path")),
        sa.UniqueConstraint("md5", name=op.f("uq_images_md5")),  # the de-duplication key
    )
    op.create_index("ix_images_imageset_id_id", "images", ["imageset_id", "id"])
    op.create_index("ix_images_date_taken", "images", ["date_taken"])
    op.create_index("ix_images_camera", "images", ["camera_make", "camera_model"])
    op.create_index(op.f("ix_images_type"), "images", ["type"])
    op.create_table(
        "image_set_members",
        sa.Column("imageset_id", sa.Integer(), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["image_id"], ["images.id"], ondelete="CASCADE",
                                name=op.f("fk_image_set_members_image_id_images")),
        sa.ForeignKeyConstraint(["imageset_id"], ["image_sets.id"], ondelete="CASCADE",
                                name=op.f("fk_image_set_members_imageset_id_image_sets")),
        sa.PrimaryKeyConstraint("imageset_id", "image_id", name=op.f("pk_image_set_members")),
    )
    op.create_index(op.f("ix_image_set_members_image_id"), "image_set_members", ["image_id"])
    op.create_table(
        "finish_reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("imageset_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("image_id", sa.Integer(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("filesize", sa.BigInteger(), nullable=True),
        sa.Column("date_processed", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint("outcome IN ('accepted', 'duplicate', 'rejected')", name=op.f("ck_finish_reports_outcome")),
        sa.ForeignKeyConstraint(["image_id"], ["images.id"], ondelete="SET NULL",
                                name=op.f("fk_finish_reports_image_id_images")),
        sa.ForeignKeyConstraint(["imageset_id"], ["image_sets.id"], ondelete="CASCADE",
                                name=op.f("fk_finish_reports_imageset_id_image_sets")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_finish_reports")),
        sa.UniqueConstraint("imageset_id", "name", name="uq_finish_reports_imageset_id_name"),
    )
    op.create_table(
        "api_key_image_sets",
        sa.Column("api_key_id", sa.Integer(), nullable=False),
        sa.Column("imageset_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["api_key_id"], ["api_keys.id"], ondelete="CASCADE",
                                name=op.f("fk_api_key_image_sets_api_key_id_api_keys")),
        sa.ForeignKeyConstraint(["imageset_id"], ["image_sets.id"], ondelete="CASCADE",
                                name=op.f("fk_api_key_image_sets_imageset_id_image_sets")),
        sa.PrimaryKeyConstraint("api_key_id", "imageset_id", name=op.f("pk_api_key_image_sets")),
    )


def downgrade():
    op.drop_table("api_key_image_sets")
    op.drop_table("finish_reports")
    op.drop_index(op.f("ix_image_set_members_image_id"), table_name="image_set_members")
    op.drop_table("image_set_members")
    op.drop_index(op.f("ix_images_type"), table_name="images")
    op.drop_index("ix_images_camera", table_name="images")
    op.drop_index("ix_images_date_taken", table_name="images")
    op.drop_index("ix_images_imageset_id_id", table_name="images")
    op.drop_table("images")
    op.drop_table("image_sets")

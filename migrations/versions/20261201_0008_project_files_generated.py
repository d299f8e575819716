"""project files remember whether a generation wrote them

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 21:40:00.000000
"""
from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Files that exist already are treated as the user's: a later generation keeps them
    # unless it writes the same path.
    with op.batch_alter_table('project_files', schema=None) as batch_op:
        batch_op.add_column(sa.Column('generated', sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('project_files', schema=None) as batch_op:
        batch_op.drop_column('generated')

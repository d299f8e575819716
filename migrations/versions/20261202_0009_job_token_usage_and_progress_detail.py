"""jobs: token usage, progress detail and failure details

A job records the model tokens it used (by stage, and in all for the monthly token budget),
what is happening inside its current stage, and what a permanent failure left to look at.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 09:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('progress_detail', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('progress_tokens', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('error_details', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('token_usage', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('tokens_used', sa.Integer(), nullable=False, server_default='0'))


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        for column in ('tokens_used', 'token_usage', 'error_details', 'progress_tokens', 'progress_detail'):
            batch_op.drop_column(column)

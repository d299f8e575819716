"""jobs: the task follows from the kind

A job's task is named by its kind's description in shared.jobs.kinds, so a renamed task
never leaves rows behind that the outbox would keep sending under the old name.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 22:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('task_name')


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('task_name', sa.String(length=64), nullable=False, server_default=''))
    op.execute("UPDATE jobs SET task_name = CASE WHEN kind = 'billing_sync' THEN 'billing.sync_customer' "
               "ELSE 'generation.run' END")

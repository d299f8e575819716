"""monthly_usage: each user's generations and model tokens per calendar month

A submission takes its place in the plan's monthly quota by a conditional UPDATE of the
user's row for the month instead of counting the month's jobs, so its cost does not grow
with the jobs a user has run. A month's row is created, from the jobs already there, by the
first submission of that month.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 21:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'monthly_usage',
        sa.Column('user_id', sa.Uuid(), nullable=False),
        sa.Column('month', sa.DateTime(timezone=True), nullable=False),
        sa.Column('generations', sa.Integer(), nullable=False),
        sa.Column('tokens', sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_monthly_usage_user_id_users'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('user_id', 'month', name=op.f('pk_monthly_usage')),
    )


def downgrade() -> None:
    op.drop_table('monthly_usage')

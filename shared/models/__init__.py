"""SQLAlchemy models; importing this package registers every table on `Base.metadata`."""
from shared.models.audit import AuditEntry
from shared.models.base import Base
from shared.models.billing import BillingAccount, Invoice, MonthlyUsage, WebhookEvent
from shared.models.jobs import IdempotencyKey, Job
from shared.models.oauth import OAuthIdentity, OAuthTicket
from shared.models.projects import Project, ProjectFile
from shared.models.users import RefreshToken, User

__all__ = ["AuditEntry", "Base", "BillingAccount", "IdempotencyKey", "Invoice", "Job", "MonthlyUsage", "OAuthIdentity",
           "OAuthTicket", "Project", "ProjectFile", "RefreshToken", "User", "WebhookEvent"]

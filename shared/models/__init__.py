"""SQLAlchemy models; importing this package registers every table on `Base.metadata`."""
from shared.models.base import Base
from shared.models.jobs import IdempotencyKey, Job
from shared.models.projects import Project, ProjectFile
from shared.models.users import RefreshToken, User

__all__ = ["Base", "IdempotencyKey", "Job", "Project", "ProjectFile", "RefreshToken", "User"]

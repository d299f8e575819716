"""SQLAlchemy models; importing this package registers every table on `Base.metadata`."""
from shared.models.base import Base
from shared.models.projects import Project, ProjectFile
from shared.models.users import RefreshToken, User

__all__ = ["Base", "Project", "ProjectFile", "RefreshToken", "User"]

"""Projects and their files: ownership, size limits and the version that keys caches."""
from __future__ import annotations

import hashlib
import io
import uuid
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.errors import Conflict, NotFound, Unprocessable
from shared.models import Project, ProjectFile, User
from shared.paths import check_file_path
from shared.settings import Settings


@dataclass(frozen=True)
class Limits:
    max_file_bytes: int
    max_project_bytes: int
    max_files: int
    max_depth: int
    max_segment_length: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        return cls(settings.max_file_bytes, settings.max_project_bytes, settings.max_files_per_project,
                   settings.max_path_depth, settings.max_path_segment_length)


def bump_content_version(session: Session, owner_id: uuid.UUID) -> None:
    """Mark the owner's project data as changed, invalidating cached lists keyed by version."""
    session.execute(update(User).where(User.id == owner_id).values(content_version=User.content_version + 1))


def list_projects(session: Session, owner_id: uuid.UUID, page: int, per_page: int) -> tuple[list[Project], int]:
    total = session.scalar(select(func.count()).select_from(Project).where(Project.owner_id == owner_id)) or 0
    rows = session.scalars(
        select(Project).where(Project.owner_id == owner_id)
        .order_by(Project.created_at.desc(), Project.id)
        .offset((page - 1) * per_page).limit(per_page)
    ).all()
    return list(rows), total


def get_project(session: Session, owner_id: uuid.UUID, project_id: uuid.UUID, *, for_update: bool = False) -> Project:
    """The owner's project; another user's project is indistinguishable from a missing one.

    Writers lock the owner's row before the project's: every path that changes a user's
    projects (file writes, finished jobs, quota-checked submissions) takes the two locks
    in that order, so they cannot deadlock on PostgreSQL.
    """
    query = select(Project).where(Project.id == project_id, Project.owner_id == owner_id)
    if for_update:
        session.execute(select(User.id).where(User.id == owner_id).with_for_update())
        query = query.with_for_update()
    project = session.scalar(query)
    if project is None:
        raise NotFound("project not found")
    return project


def create_project(session: Session, owner_id: uuid.UUID, name: str, description: str | None) -> Project:
    project = Project(owner_id=owner_id, name=name, description=description)
    session.add(project)
    _flush_unique_name(session, name)
    bump_content_version(session, owner_id)
    return project


def update_project(session: Session, project: Project, changes: Mapping[str, object]) -> Project:
    for key, value in changes.items():
        setattr(project, key, value)
    _flush_unique_name(session, project.name)
    bump_content_version(session, project.owner_id)
    return project


def delete_project(session: Session, project: Project) -> None:
    session.delete(project)
    bump_content_version(session, project.owner_id)


def _flush_unique_name(session: Session, name: str) -> None:
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise Conflict(f"you already have a project named '{name}'") from None


def list_files(session: Session, project: Project) -> list[ProjectFile]:
    return list(session.scalars(
        select(ProjectFile).where(ProjectFile.project_id == project.id).order_by(ProjectFile.path)
    ))


def page_files(session: Session, project: Project, page: int, per_page: int) -> list[ProjectFile]:
    """One page of the project's files by path (the project row already holds their count)."""
    return list(session.scalars(
        select(ProjectFile).where(ProjectFile.project_id == project.id).order_by(ProjectFile.path)
        .offset((page - 1) * per_page).limit(per_page)
    ))


def get_file(session: Session, project: Project, path: str) -> ProjectFile:
    found = session.scalar(select(ProjectFile).where(ProjectFile.project_id == project.id, ProjectFile.path == path))
    if found is None:
        raise NotFound("file not found")
    return found


def check_path(path: str, limits: Limits) -> str:
    return check_file_path(path, max_depth=limits.max_depth, max_segment_length=limits.max_segment_length)


def write_files(session: Session, project: Project, files: Mapping[str, str], limits: Limits, *,
                generated: bool = False) -> list[str]:
    """Create or replace every file in `files` at once, within the project's limits.

    `generated` marks the files as a generation's (else as the user's). Returns the
    paths that were newly created. The caller's transaction makes the whole batch
    appear together or not at all.
    """
    encoded = {check_path(path, limits): content.encode("utf-8") for path, content in files.items()}
    for path, data in encoded.items():
        if len(data) > limits.max_file_bytes:
            raise Unprocessable(f"file '{path}' is {len(data)} bytes; the limit is {limits.max_file_bytes}",
                                field="body.content")
    existing = {f.path: f for f in session.scalars(
        select(ProjectFile).where(ProjectFile.project_id == project.id, ProjectFile.path.in_(list(encoded)))
    )}
    new_total = project.total_bytes + sum(
        len(data) - (existing[path].size if path in existing else 0) for path, data in encoded.items())
    new_count = project.file_count + sum(1 for path in encoded if path not in existing)
    if new_total > limits.max_project_bytes:
        raise Unprocessable(f"the project would hold {new_total} bytes; the limit is {limits.max_project_bytes}",
                            field="body.content")
    if new_count > limits.max_files:
        raise Unprocessable(f"the project would hold {new_count} files; the limit is {limits.max_files}",
                            field="body.content")
    created = []
    for path, data in encoded.items():
        digest = hashlib.sha256(data).hexdigest()
        record = existing.get(path)
        if record is None:
            session.add(ProjectFile(project_id=project.id, path=path, content=files[path], size=len(data),
                                    sha256=digest, generated=generated))
            created.append(path)
        else:
            if record.sha256 != digest:
                record.content, record.size, record.sha256 = files[path], len(data), digest
            record.generated = generated
    project.total_bytes, project.file_count = new_total, new_count
    bump_content_version(session, project.owner_id)
    return created


@dataclass(frozen=True)
class FileChanges:
    """What a generation did to a project's files."""

    added: list[str]
    replaced: list[str]
    removed: list[str]

    def to_dict(self) -> dict[str, list[str]]:
        return {"added": self.added, "replaced": self.replaced, "removed": self.removed}


def replace_generated_files(session: Session, project: Project, files: Mapping[str, str],
                            limits: Limits) -> FileChanges:
    """Write a generation's files in place of the previous generation's.

    Files an earlier generation wrote and this one does not are removed; files the user
    wrote stay unless this generation writes the same path.
    """
    existing = {f.path: f for f in list_files(session, project)}
    new_paths = {check_path(path, limits) for path in files}
    removed = sorted(path for path, record in existing.items() if record.generated and path not in new_paths)
    for path in removed:
        record = existing[path]
        project.total_bytes -= record.size
        project.file_count -= 1
        session.delete(record)
    # The removals count before the limits are checked, and the flush orders them first.
    session.flush()
    added = sorted(write_files(session, project, files, limits, generated=True))
    replaced = sorted(new_paths & existing.keys())
    return FileChanges(added=added, replaced=replaced, removed=removed)


def delete_file(session: Session, project: Project, path: str) -> None:
    record = get_file(session, project, path)
    project.total_bytes -= record.size
    project.file_count -= 1
    session.delete(record)
    bump_content_version(session, project.owner_id)


def archive(session: Session, project: Project) -> bytes:
    """The project's files as a zip, under a folder named after the project."""
    buffer = io.BytesIO()
    root = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in project.name).strip(".-") or "project"
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for record in list_files(session, project):
            zf.writestr(f"{root}/{record.path}", record.content)
    return buffer.getvalue()

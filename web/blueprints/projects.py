"""Projects and their files, visible only to their owner."""
from __future__ import annotations

from flask import Response, url_for
from flask_openapi3 import APIBlueprint, Tag

from shared import projects
from shared.schemas.projects import (
    FileInfo, FileList, FileListQuery, FileOut, FilePath, FileWrite, ProjectCreate, ProjectListQuery, ProjectOut,
    ProjectPage, ProjectPath, ProjectUpdate,
)
from web.auth import authenticated_account, current_user_id
from web.caching import cache_get, cache_set
from web.openapi import BEARER, binary, responses
from web.state import db_session, state

bp = APIBlueprint("projects", __name__, url_prefix="/api/v2/projects", abp_tags=[Tag(name="projects")],
                  abp_security=BEARER)


def _project_json(project) -> dict:
    return ProjectOut.model_validate(project).model_dump(mode="json")


@bp.get("", responses=responses({200: ProjectPage}, 401))
def list_projects(query: ProjectListQuery):
    """The caller's projects, newest first (cached until any of them changes)."""
    account = authenticated_account()
    key = f"projects:{account.user_id}:v{account.content_version}:{query.page}:{query.per_page}"
    # The rendered JSON text is cached, so a hit is served without decoding and re-encoding it.
    body = cache_get(key)
    if body is None:
        rows, total = projects.list_projects(db_session(), account.user_id, query.page, query.per_page)
        body = ProjectPage(items=[ProjectOut.model_validate(p) for p in rows], page=query.page,
                           per_page=query.per_page, total=total).model_dump_json()
        cache_set(key, body, state().settings.project_list_cache_seconds)
    return Response(body, mimetype="application/json")


@bp.post("", responses=responses({201: ProjectOut}, 401, 409))
def create_project(body: ProjectCreate):
    """Create a project."""
    session = db_session()
    project = projects.create_project(session, current_user_id(), body.name, body.description)
    session.commit()
    return _project_json(project), 201, {"Location": url_for("projects.get_project", project_id=project.id)}


@bp.get("/<uuid:project_id>", responses=responses({200: ProjectOut}, 401, 404))
def get_project(path: ProjectPath):
    """One project."""
    return _project_json(projects.get_project(db_session(), current_user_id(), path.project_id))


@bp.patch("/<uuid:project_id>", responses=responses({200: ProjectOut}, 401, 404, 409))
def update_project(path: ProjectPath, body: ProjectUpdate):
    """Rename a project or change its description."""
    session = db_session()
    project = projects.get_project(session, current_user_id(), path.project_id, for_update=True)
    projects.update_project(session, project, body.model_dump(exclude_unset=True, exclude_none=True))
    session.commit()
    return _project_json(project)


@bp.delete("/<uuid:project_id>", responses=responses({204: None}, 401, 404))
def delete_project(path: ProjectPath):
    """Delete a project and its files."""
    session = db_session()
    projects.delete_project(session, projects.get_project(session, current_user_id(), path.project_id,
                                                          for_update=True))
    session.commit()
    return "", 204


@bp.get("/<uuid:project_id>/files", responses=responses({200: FileList}, 401, 404))
def list_files(path: ProjectPath, query: FileListQuery):
    """The project's files without their content, by path, page by page."""
    session = db_session()
    project = projects.get_project(session, current_user_id(), path.project_id)
    rows = projects.page_files(session, project, query.page, query.per_page)
    return FileList(project_id=project.id, items=[FileInfo.model_validate(f) for f in rows],
                    total_bytes=project.total_bytes, page=query.page, per_page=query.per_page,
                    total=project.file_count).model_dump(mode="json")


@bp.get("/<uuid:project_id>/files/<filepath:file_path>", responses=responses({200: FileOut}, 401, 404))
def get_file(path: FilePath):
    """One file with its content."""
    session = db_session()
    project = projects.get_project(session, current_user_id(), path.project_id)
    file_path = projects.check_path(path.file_path, state().limits)
    return FileOut.model_validate(projects.get_file(session, project, file_path)).model_dump(mode="json")


@bp.put("/<uuid:project_id>/files/<filepath:file_path>", responses=responses({200: FileInfo, 201: FileInfo}, 401, 404))
def put_file(path: FilePath, body: FileWrite):
    """Create or replace a file."""
    session = db_session()
    project = projects.get_project(session, current_user_id(), path.project_id, for_update=True)
    created = projects.write_files(session, project, {path.file_path: body.content}, state().limits)
    session.commit()
    record = projects.get_file(session, project, path.file_path)
    return FileInfo.model_validate(record).model_dump(mode="json"), 201 if created else 200


@bp.delete("/<uuid:project_id>/files/<filepath:file_path>", responses=responses({204: None}, 401, 404))
def delete_file(path: FilePath):
    """Delete a file."""
    session = db_session()
    project = projects.get_project(session, current_user_id(), path.project_id, for_update=True)
    projects.delete_file(session, project, projects.check_path(path.file_path, state().limits))
    session.commit()
    return "", 204


@bp.get("/<uuid:project_id>/archive", responses=responses({200: binary("application/zip", "The files as a zip")},
                                                            401, 404))
def download_archive(path: ProjectPath):
    """Every file of the project as one zip archive."""
    session = db_session()
    project = projects.get_project(session, current_user_id(), path.project_id)
    data = projects.archive(session, project)
    return Response(data, mimetype="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="project-{project.id}.zip"'})

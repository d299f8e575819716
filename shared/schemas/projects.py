"""Request and response bodies for projects and their files."""
from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.paths import MAX_PATH_LENGTH, file_path_pattern
from shared.schemas.common import CONTROL_CLASS, WHITESPACE_CLASS, PageMeta, PageQuery, StoredText
from shared.settings import Settings

EXAMPLE_PROJECT_ID = "3f2b8c1e-6d4a-4f0e-9b7a-2c5d8e1f0a9b"
_EXAMPLE_TIME = "2026-12-01T09:30:00Z"
_EXAMPLE_PROJECT = {"id": EXAMPLE_PROJECT_ID, "name": "bookshop", "description": "A small shop's catalogue",
                    "file_count": 14, "total_bytes": 48213, "created_at": _EXAMPLE_TIME,
                    "updated_at": "2026-12-01T09:31:12Z"}
_EXAMPLE_FILE = {"path": "bookshop/app.py", "size": 5120, "generated": True,
                 "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                 "created_at": _EXAMPLE_TIME, "updated_at": _EXAMPLE_TIME}


def _strip_name(value: str) -> str:
    value = value.strip()
    if any("\ud800" <= ch <= "\udfff" for ch in value):
        raise ValueError("name must be valid Unicode text")
    if not value:
        raise ValueError("name must not be blank")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValueError("name must not contain control characters")
    return value


# _strip_name's rules for the document: once the whitespace at either end is stripped, something is
# left, and it holds no control character.
_VISIBLE = rf"[^{CONTROL_CLASS}{WHITESPACE_CLASS}]"
NAME_PATTERN = rf"^[{WHITESPACE_CLASS}]*{_VISIBLE}(?:[^{CONTROL_CLASS}]*{_VISIBLE})?[{WHITESPACE_CLASS}]*$"
_NAME_RULES = {"pattern": NAME_PATTERN}
_NAME = "Leading and trailing whitespace is removed; not blank, and no control characters"


class ProjectCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", openapi_extra={"example": {
        "name": "bookshop", "description": "A small shop's catalogue"}})

    name: str = Field(min_length=1, max_length=100, json_schema_extra=_NAME_RULES, description=_NAME)
    description: StoredText | None = Field(None, max_length=2000)

    _name = field_validator("name")(_strip_name)


class ProjectUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", openapi_extra={"example": {
        "description": "The shop's catalogue, with reviews"}})

    name: Annotated[str, Field(json_schema_extra=_NAME_RULES)] | None = Field(None, min_length=1, max_length=100,
                                                                              description=_NAME)
    description: StoredText | None = Field(None, max_length=2000)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return None if value is None else _strip_name(value)


class ProjectOut(BaseModel):
    model_config = ConfigDict(from_attributes=True, json_schema_extra={"example": _EXAMPLE_PROJECT})

    id: uuid.UUID
    name: str
    description: str | None
    file_count: int
    total_bytes: int
    created_at: datetime
    updated_at: datetime


class ProjectPage(PageMeta):
    model_config = ConfigDict(json_schema_extra={"example":
        {"items": [_EXAMPLE_PROJECT], "page": 1, "per_page": 20, "total": 1}})

    items: list[ProjectOut]


class ProjectListQuery(PageQuery):
    pass


class ProjectPath(BaseModel):
    project_id: uuid.UUID


_PATH_LIMITS = {"max_depth": Settings.model_fields["max_path_depth"].default,
                "max_segment_length": Settings.model_fields["max_path_segment_length"].default}


class FilePath(BaseModel):
    project_id: uuid.UUID
    # The path check gives the reasons; the schema states its rules with the default limits.
    file_path: str = Field(min_length=1, max_length=4096, json_schema_extra={
        "maxLength": MAX_PATH_LENGTH, "pattern": file_path_pattern(**_PATH_LIMITS)}, description=(
        "A relative POSIX path such as bookshop/app.py: at most {max_depth} segments (MAX_PATH_DEPTH) of at most "
        "{max_segment_length} characters (MAX_PATH_SEGMENT_LENGTH), none of them '.' or '..', no backslash or "
        "control character, and no drive letter").format(**_PATH_LIMITS))


class FileWrite(BaseModel):
    model_config = ConfigDict(extra="forbid", openapi_extra={"example": {
        "content": "# Notes\n\nIdeas for the next version.\n"}})

    content: StoredText = Field(description="UTF-8 text content")


class FileInfo(BaseModel):
    model_config = ConfigDict(from_attributes=True, json_schema_extra={"example": _EXAMPLE_FILE})

    path: str
    size: int = Field(description="Bytes of UTF-8 content")
    sha256: str
    generated: bool = Field(description="Written by a generation job; the next generation replaces or removes "
                                        "it. False once you write the file yourself.")
    created_at: datetime
    updated_at: datetime


class FileOut(FileInfo):
    model_config = ConfigDict(json_schema_extra={"example": {
        **_EXAMPLE_FILE, "path": "README.md", "size": 11, "content": "# bookshop\n",
        "sha256": "74cb01580d853105c8cae0fa2c91389e3219d433bc68e0d04bdce0df0ede9418"}})

    content: str


class FileListQuery(PageQuery):
    pass


class FileList(PageMeta):
    model_config = ConfigDict(json_schema_extra={"example": {
        "project_id": EXAMPLE_PROJECT_ID, "items": [_EXAMPLE_FILE], "total_bytes": 48213, "page": 1,
        "per_page": 20, "total": 14}})

    project_id: uuid.UUID
    items: list[FileInfo]
    total_bytes: int = Field(description="Bytes of all the project's files, not only this page's")

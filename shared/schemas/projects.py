"""Request and response bodies for projects and their files."""
from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.schemas.common import PageMeta, PageQuery, StoredText


def _strip_name(value: str) -> str:
    value = value.strip()
    if any("\ud800" <= ch <= "\udfff" for ch in value):
        raise ValueError("name must be valid Unicode text")
    if not value:
        raise ValueError("name must not be blank")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValueError("name must not contain control characters")
    return value


class ProjectCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    description: StoredText | None = Field(None, max_length=2000)

    _name = field_validator("name")(_strip_name)


class ProjectUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=100)
    description: StoredText | None = Field(None, max_length=2000)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        return None if value is None else _strip_name(value)


class ProjectOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    description: str | None
    file_count: int
    total_bytes: int
    created_at: datetime
    updated_at: datetime


class ProjectPage(PageMeta):
    items: list[ProjectOut]


class ProjectListQuery(PageQuery):
    pass


class ProjectPath(BaseModel):
    project_id: uuid.UUID


class FilePath(BaseModel):
    project_id: uuid.UUID
    file_path: str = Field(min_length=1, max_length=4096)


class FileWrite(BaseModel):
    model_config = ConfigDict(extra="forbid")

    content: StoredText = Field(description="UTF-8 text content")


class FileInfo(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    path: str
    size: int
    sha256: str
    created_at: datetime
    updated_at: datetime


class FileOut(FileInfo):
    content: str


class FileList(BaseModel):
    project_id: uuid.UUID
    items: list[FileInfo]
    total_bytes: int

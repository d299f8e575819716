"""Render a spec into the files of a runnable standard-library project."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from shared.generator.api_templates import APP_PY, INIT_PY, MAIN_PY
from shared.generator.data_templates import MODELS_PY, STORE_PY, VALIDATION_PY
from shared.generator.frontend import STATIC_ROUTES, render_app_js, render_index_html, render_style_css
from shared.generator.tests_render import render_tests
from shared.generator.text import fill, py_literal
from shared.schemas.spec import AppSpec, EntitySpec, FieldSpec, GenerationKind

_SQL_TYPES = {
    "string": "TEXT",
    "text": "TEXT",
    "integer": "INTEGER",
    "float": "REAL",
    "boolean": "INTEGER",
    "date": "TEXT",
    "datetime": "TEXT",
}


@dataclass(frozen=True)
class PlannedFile:
    """A file the generated project consists of, and why it exists."""

    path: str
    purpose: str


def _column(field: FieldSpec) -> str:
    name = f'"{field.name}"'
    parts = [name, _SQL_TYPES[field.type]]
    if field.required:
        parts.append("NOT NULL")
    if field.unique:
        parts.append("UNIQUE")
    if field.type == "string":
        parts.append(f"CHECK (length({name}) <= {field.max_length})")
    elif field.type == "boolean":
        parts.append(f"CHECK ({name} IN (0, 1))")
    return " ".join(parts)


def create_table_sql(entity: EntitySpec) -> str:
    """Return the CREATE TABLE statement of an entity."""
    columns = ['"id" INTEGER PRIMARY KEY AUTOINCREMENT'] + [_column(field) for field in entity.fields]
    body = ",\n".join(f"    {column}" for column in columns)
    return f'CREATE TABLE IF NOT EXISTS "{entity.plural}" (\n{body}\n)'


def _field_py(field: FieldSpec) -> str:
    args = [py_literal(field.name), py_literal(field.type), f"required={field.required}", f"unique={field.unique}"]
    if field.max_length is not None:
        args.append(f"max_length={field.max_length}")
    return f"            Field({', '.join(args)}),"


def _entity_py(entity: EntitySpec) -> str:
    lines = [
        "    Entity(",
        f"        name={py_literal(entity.name)},",
        f"        plural={py_literal(entity.plural or '')},",
        "        fields=(",
        *(_field_py(field) for field in entity.fields),
        "        ),",
    ]
    if entity.description:
        lines.append(f"        description={py_literal(entity.description)},")
    lines.append("    ),")
    return "\n".join(lines)


def render_models(spec: AppSpec) -> str:
    """Return the generated models.py: entity definitions and table schema."""
    return fill(
        MODELS_PY,
        app_name=spec.app_name,
        page_size=str(spec.options.page_size),
        max_page_size=str(spec.options.max_page_size),
        port=str(spec.options.port),
        entities="\n".join(_entity_py(entity) for entity in spec.entities),
        schema="\n".join(f'    """{create_table_sql(entity)}""",' for entity in spec.entities),
    )


def _field_doc(field: FieldSpec) -> str:
    notes = ["required" if field.required else "optional"]
    if field.unique:
        notes.append("unique")
    if field.max_length is not None:
        notes.append(f"at most {field.max_length} characters")
    return f"| `{field.name}` | {field.type} | {', '.join(notes)} |"


def render_readme(spec: AppSpec, kind: GenerationKind) -> str:
    """Return README.md: how to run and test the project, and its API."""
    name = spec.app_name
    lines = [f"# {name}", ""]
    if spec.description:
        lines += [spec.description, ""]
    lines += [
        "A CRUD JSON API over SQLite that needs nothing but Python 3.8 or newer: no packages to install.",
        "",
        "## Run",
        "",
        "```sh",
        f"python -m {name}                 # http://127.0.0.1:{spec.options.port}/",
        f"python -m {name} 9000 --db data.sqlite3",
        "```",
        "",
        "The port can also come from `$PORT`, the interface from `$HOST` (default 127.0.0.1) and the",
        f"database file from `$DATABASE_PATH` (default `{name}.sqlite3`). Tables are created on start.",
        "",
    ]
    if kind == GenerationKind.FULLSTACK:
        lines += ["Open the root URL in a browser for a page that lists, creates and deletes records.", ""]
    lines += [
        "## Test",
        "",
        "```sh",
        "python -m unittest",
        "```",
        "",
        "The tests start the server on a free loopback port with a temporary database.",
        "",
        "## API",
        "",
        "Every resource supports `GET /api/<plural>` (list, `?limit=` and `?offset=`, at most "
        f"{spec.options.max_page_size} per page, {spec.options.page_size} by default), `POST /api/<plural>`, "
        "and `GET`, `PUT` (fields left out keep their values), `DELETE` on `/api/<plural>/<id>`.",
        "Dates and datetimes are ISO 8601 strings. Errors are JSON: `{\"error\": \"...\", \"fields\": {...}}`",
        "with status 400 for invalid input, 404 for unknown records, 409 for duplicate unique values.",
        "",
    ]
    for entity in spec.entities:
        lines += [f"### {entity.name}: `/api/{entity.plural}`", ""]
        if entity.description:
            lines += [entity.description, ""]
        lines += ["| Field | Type | Notes |", "| --- | --- | --- |", "| `id` | integer | assigned by the server |"]
        lines += [_field_doc(field) for field in entity.fields]
        lines.append("")
    return "\n".join(lines)


def _static_files_py(kind: GenerationKind) -> str:
    if kind != GenerationKind.FULLSTACK:
        return "{}"
    items = [
        f"    {py_literal(url)}: ({py_literal(name)}, {py_literal(content_type)}),"
        for url, (name, content_type) in STATIC_ROUTES.items()
    ]
    return "{\n" + "\n".join(items) + "\n}"


_GITIGNORE = "__pycache__/\n*.pyc\n*.sqlite3\n"


def _renderers(spec: AppSpec, kind: GenerationKind) -> dict[str, tuple[str, Callable[[], str]]]:
    name = spec.app_name
    files: dict[str, tuple[str, Callable[[], str]]] = {
        f"{name}/__init__.py": ("package marker and version", lambda: fill(INIT_PY, app_name=name)),
        f"{name}/__main__.py": ("`python -m` entry point", lambda: fill(MAIN_PY, app_name=name)),
        f"{name}/app.py": (
            "HTTP routing, JSON handling and main()",
            lambda: fill(APP_PY, app_name=name, static_files=_static_files_py(kind)),
        ),
        f"{name}/models.py": ("entity definitions and table schema", lambda: render_models(spec)),
        f"{name}/store.py": ("SQLite persistence", lambda: fill(STORE_PY, app_name=name)),
        f"{name}/validation.py": ("request payload validation", lambda: fill(VALIDATION_PY, app_name=name)),
        "tests/__init__.py": ("test package marker", lambda: ""),
        "tests/test_api.py": ("end-to-end API tests", lambda: render_tests(spec, kind)),
        "README.md": ("how to run, test and call the API", lambda: render_readme(spec, kind)),
        ".gitignore": ("files not to commit", lambda: _GITIGNORE),
    }
    if kind == GenerationKind.FULLSTACK:
        files["static/index.html"] = ("web page shell", lambda: render_index_html(spec))
        files["static/app.js"] = ("browser code calling the API", lambda: render_app_js(spec))
        files["static/style.css"] = ("page styles", render_style_css)
    return files


def plan_files(spec: AppSpec, kind: GenerationKind | str) -> list[PlannedFile]:
    """List the files `render` produces, in path order."""
    renderers = _renderers(spec, GenerationKind(kind))
    return [PlannedFile(path, renderers[path][0]) for path in sorted(renderers)]


def render(spec: AppSpec, kind: GenerationKind | str) -> dict[str, str]:
    """Return the project as {relative POSIX path: content}; identical specs give identical files."""
    renderers = _renderers(spec, GenerationKind(kind))
    return {path: renderers[path][1]() for path in sorted(renderers)}

"""Render the static web page of fullstack projects: plain HTML, CSS and JavaScript, no external requests."""
from __future__ import annotations

import html
import json

from shared.generator.text import fill
from shared.schemas.spec import AppSpec, EntitySpec, FieldSpec

# URL path -> (file in static/, content type); the generated server serves exactly these.
STATIC_ROUTES: dict[str, tuple[str, str]] = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}

_INDEX_HTML = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{{title}}</title>
  <link rel="stylesheet" href="/style.css">
  <script src="/app.js" defer></script>
</head>
<body>
  <header>
    <h1>{{title}}</h1>
{{description}}  </header>
  <main>
{{sections}}  </main>
  <noscript><p>This page needs JavaScript to talk to the API.</p></noscript>
</body>
</html>
"""

_SECTION = """    <section class="entity" id="entity-{{plural}}">
      <h2>{{name}}</h2>
{{description}}      <form class="create">
{{inputs}}        <button type="submit">Add {{name}}</button>
      </form>
      <p class="message" role="status"></p>
      <table>
        <thead><tr><th>id</th>{{headers}}<th></th></tr></thead>
        <tbody></tbody>
      </table>
      <p class="count"></p>
    </section>
"""

_APP_JS = """"use strict";

// Entity definitions generated from the spec; each has a <section id="entity-PLURAL"> in index.html.
const ENTITIES = {{entities}};
const PAGE_SIZE = {{page_size}};

async function callApi(method, path, body) {
  const options = { method: method, headers: { Accept: "application/json" } };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  if (response.status === 204) {
    return null;
  }
  const data = await response.json();
  if (!response.ok) {
    const problems = Object.entries(data.fields || {}).map((entry) => entry[0] + " " + entry[1]);
    throw new Error([data.error].concat(problems).join("; "));
  }
  return data;
}

function readField(form, field) {
  // Inputs carry data-field rather than name: a control named e.g. "reset" would shadow form.reset().
  const input = form.querySelector('[data-field="' + field.name + '"]');
  if (field.type === "boolean") {
    return input.checked;
  }
  if (input.value === "") {
    return field.required && (field.type === "string" || field.type === "text") ? "" : null;
  }
  if (field.type === "integer" || field.type === "float") {
    return Number(input.value);
  }
  return input.value;
}

function showValue(field, value) {
  if (value === null || value === undefined) {
    return "";
  }
  if (field.type === "boolean") {
    return value ? "yes" : "no";
  }
  return String(value);
}

function setMessage(section, text, isError) {
  const message = section.querySelector(".message");
  message.textContent = text;
  message.classList.toggle("error", isError);
}

function cell(row, text) {
  const td = document.createElement("td");
  td.textContent = text;
  row.appendChild(td);
  return td;
}

async function loadRecords(section, entity) {
  const data = await callApi("GET", "/api/" + entity.plural + "?limit=" + PAGE_SIZE);
  const tbody = section.querySelector("tbody");
  tbody.textContent = "";
  for (const record of data.items) {
    const row = document.createElement("tr");
    cell(row, String(record.id));
    for (const field of entity.fields) {
      cell(row, showValue(field, record[field.name]));
    }
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = "Delete";
    button.addEventListener("click", () => deleteRecord(section, entity, record.id));
    cell(row, "").appendChild(button);
    tbody.appendChild(row);
  }
  section.querySelector(".count").textContent = "Showing " + data.items.length + " of " + data.total + ".";
}

async function deleteRecord(section, entity, id) {
  if (!window.confirm("Delete " + entity.name + " " + id + "?")) {
    return;
  }
  try {
    await callApi("DELETE", "/api/" + entity.plural + "/" + id);
    setMessage(section, entity.name + " " + id + " deleted.", false);
    await loadRecords(section, entity);
  } catch (error) {
    setMessage(section, error.message, true);
  }
}

async function createRecord(section, entity, form) {
  const payload = {};
  for (const field of entity.fields) {
    payload[field.name] = readField(form, field);
  }
  try {
    const record = await callApi("POST", "/api/" + entity.plural, payload);
    form.reset();
    setMessage(section, entity.name + " " + record.id + " created.", false);
    await loadRecords(section, entity);
  } catch (error) {
    setMessage(section, error.message, true);
  }
}

for (const entity of ENTITIES) {
  const section = document.getElementById("entity-" + entity.plural);
  const form = section.querySelector("form");
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    createRecord(section, entity, form);
  });
  loadRecords(section, entity).catch((error) => setMessage(section, error.message, true));
}
"""

_STYLE_CSS = """body {
  font-family: system-ui, sans-serif;
  margin: 0 auto;
  max-width: 64rem;
  padding: 1rem;
  color: #1f2328;
}
section.entity {
  border-top: 1px solid #d0d7de;
  padding: 0.5rem 0 1.5rem;
}
form.create {
  display: flex;
  flex-wrap: wrap;
  gap: 0.75rem;
  align-items: flex-end;
}
form.create label {
  display: flex;
  flex-direction: column;
  font-size: 0.875rem;
}
table {
  border-collapse: collapse;
  margin-top: 0.75rem;
  width: 100%;
}
th, td {
  border-bottom: 1px solid #d0d7de;
  padding: 0.25rem 0.5rem;
  text-align: left;
}
.message.error {
  color: #cf222e;
}
"""

_INPUTS = {
    "string": '<input type="text" data-field="{name}" maxlength="{max_length}"{required}>',
    "text": '<textarea data-field="{name}" rows="2"{required}></textarea>',
    "integer": '<input type="number" data-field="{name}" step="1"{required}>',
    "float": '<input type="number" data-field="{name}" step="any"{required}>',
    "boolean": '<input type="checkbox" data-field="{name}">',
    "date": '<input type="date" data-field="{name}"{required}>',
    "datetime": '<input type="datetime-local" data-field="{name}" step="1"{required}>',
}


def _input(field: FieldSpec) -> str:
    control = _INPUTS[field.type].format(
        name=field.name, max_length=field.max_length, required=" required" if field.required else ""
    )
    return f"        <label>{field.name} {control}</label>\n"


def _description(text: str | None, indent: str) -> str:
    return f'{indent}<p class="description">{html.escape(text)}</p>\n' if text else ""


def _section(entity: EntitySpec) -> str:
    return fill(
        _SECTION,
        plural=entity.plural or "",
        name=entity.name,
        description=_description(entity.description, "      "),
        inputs="".join(_input(field) for field in entity.fields),
        headers="".join(f"<th>{field.name}</th>" for field in entity.fields),
    )


def render_index_html(spec: AppSpec) -> str:
    """Return static/index.html: one section (form and table) per entity."""
    return fill(
        _INDEX_HTML,
        title=html.escape(spec.app_name),
        description=_description(spec.description, "    "),
        sections="".join(_section(entity) for entity in spec.entities),
    )


def render_app_js(spec: AppSpec) -> str:
    """Return static/app.js, which lists, creates and deletes records through the API."""
    entities = [
        {
            "name": entity.name,
            "plural": entity.plural,
            "fields": [{"name": f.name, "type": f.type, "required": f.required} for f in entity.fields],
        }
        for entity in spec.entities
    ]
    return fill(_APP_JS, entities=json.dumps(entities, indent=2), page_size=str(spec.options.max_page_size))


def render_style_css() -> str:
    """Return static/style.css."""
    return _STYLE_CSS


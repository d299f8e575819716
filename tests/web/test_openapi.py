"""The OpenAPI document and the documentation pages."""
from __future__ import annotations

import re


def test_document_is_openapi_3_1_with_every_route(client):
    doc = client.get("/api/v2/openapi.json").get_json()
    assert doc["openapi"].startswith("3.1")
    paths = set(doc["paths"])
    for path in ("/api/v2/auth/register", "/api/v2/auth/login", "/api/v2/auth/refresh", "/api/v2/auth/logout",
                 "/api/v2/auth/me", "/api/v2/projects", "/api/v2/projects/{project_id}",
                 "/api/v2/projects/{project_id}/files", "/api/v2/projects/{project_id}/files/{file_path}",
                 "/api/v2/projects/{project_id}/archive", "/healthz"):
        assert path in paths
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert doc["paths"]["/api/v2/projects"]["get"]["security"] == [{"bearer": []}]
    unauthorized = doc["paths"]["/api/v2/projects"]["get"]["responses"]["401"]["$ref"].rsplit("/", 1)[-1]
    assert "application/problem+json" in doc["components"]["responses"][unauthorized]["content"]


def _references(html: str) -> list[str]:
    html = re.sub(r"<!--.*?-->", "", html, flags=re.S)
    return re.findall(r'(?:src|href)\s*=\s*["\']([^"\']+)["\']', html)


def test_docs_pages_load_everything_from_this_server(client):
    for page in ("/api/v2/docs/", "/api/v2/docs/swagger", "/api/v2/docs/redoc"):
        response = client.get(page)
        assert response.status_code == 200, page
        html = response.get_data(as_text=True)
        refs = _references(html)
        assert refs, page
        for ref in refs:
            ref = ref.strip()
            if ref.startswith(("data:", "#")):
                continue
            assert not re.match(r"^(https?:)?//", ref), f"{page} loads {ref} from another host"
            # and every asset it names is served here
            asset = client.get(page.rsplit("/", 1)[0] + "/" + ref)
            assert asset.status_code == 200, (page, ref)

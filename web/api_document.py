"""The OpenAPI document as clients use it: named operations, shared problem responses, YAML export."""
from __future__ import annotations

import re
from typing import Any

import yaml
from flask import Flask
from flask_openapi3 import OpenAPI

from shared.schemas.jobs import EmbeddedGenerateBody
from web.json_bodies import json_body_endpoints
from web.openapi import SCHEMA_REF, problem_components, problem_response
from web.problems import refuses_invalid_requests_itself
from web.ratelimits import is_rate_limited

# operationIds become function and type names in generated clients, so they are chosen
# here once, per endpoint, rather than derived from Python function names that may be
# renamed. flask-openapi3's operation_id_callback only reaches routes added to the app
# itself (blueprints compute their ids at import), hence this table.
OPERATION_IDS: dict[str, str] = {
    "health.healthz": "getLiveness",
    "health.readyz": "getReadiness",
    "auth.register": "register",
    "auth.login": "login",
    "auth.refresh": "refreshTokens",
    "auth.logout": "logout",
    "auth.me": "getCurrentUser",
    "oauth.providers": "listLoginProviders",
    "oauth.authorize": "startOAuthLogin",
    "oauth.callback": "finishOAuthLogin",
    "oauth.exchange": "exchangeOAuthCode",
    "projects.list_projects": "listProjects",
    "projects.create_project": "createProject",
    "projects.get_project": "getProject",
    "projects.update_project": "updateProject",
    "projects.delete_project": "deleteProject",
    "projects.list_files": "listProjectFiles",
    "projects.get_file": "getProjectFile",
    "projects.put_file": "putProjectFile",
    "projects.delete_file": "deleteProjectFile",
    "projects.download_archive": "downloadProjectArchive",
    "generation.generate_agentic": "generateAgentic",
    "generation.generate_fullstack": "generateFullstack",
    "jobs.list_jobs": "listJobs",
    "jobs.get_job": "getJob",
    "jobs.cancel_job": "cancelJob",
    "billing.list_plans": "listPlans",
    "billing.checkout": "createCheckoutSession",
    "billing.portal": "createPortalSession",
    "billing.subscription": "getSubscription",
    "billing.invoices": "listInvoices",
    "billing.sync": "syncBilling",
    "billing.usage": "getUsage",
    "webhooks.stripe_webhook": "receiveStripeWebhook",
    "admin.stats": "adminGetStats",
    "admin.list_users": "adminListUsers",
    "admin.list_jobs": "adminListJobs",
    "admin.retry_job": "adminRetryJob",
    "admin.replay_jobs": "adminReplayJobs",
    "admin.list_webhooks": "adminListWebhookEvents",
    "admin.replay_webhook": "adminReplayWebhookEvent",
    "admin.flush_cache": "adminFlushCache",
    "admin.list_customers": "adminListCustomers",
    "events.issue_stream_token": "createStreamToken",
}
_HTTP_METHODS = ("get", "put", "post", "delete", "patch")


def operation_id(endpoint: str) -> str:
    """The chosen name, or a camelCase one derived from the endpoint for a route not yet in the table."""
    if endpoint in OPERATION_IDS:
        return OPERATION_IDS[endpoint]
    first, *rest = re.split(r"[._]", endpoint)
    return first + "".join(word.capitalize() for word in rest)


class DevoraOpenAPI(OpenAPI):
    """flask-openapi3's app, finishing the generated document in one place."""

    def generate_spec_json(self) -> None:
        super().generate_spec_json()
        finish_document(self, self.spec_json)


def finish_document(app: Flask, doc: dict[str, Any]) -> None:
    """Name every operation, share the problem components, and list the body errors where they occur."""
    schemas, responses = problem_components()
    components = doc.setdefault("components", {})
    components.setdefault("schemas", {}).update(schemas)
    components["responses"] = responses
    state = app.extensions.get("devora")
    if state is not None and state.settings.generation_needs_spec and "GenerateBody" in components["schemas"]:
        # The view refuses a body without a spec when the generator needs one; the document says so.
        generate = EmbeddedGenerateBody.model_json_schema(ref_template=SCHEMA_REF + "{model}")
        generate.pop("$defs", None)
        components["schemas"]["GenerateBody"] = generate
    for schema in components["schemas"].values():
        # Models give one `example` (flask-openapi3's schema model keeps no other); OpenAPI 3.1
        # prefers JSON Schema's `examples` list.
        if "example" in schema:
            schema["examples"] = [schema.pop("example")]
    endpoints = _endpoints_by_operation(app)
    json_bodies = json_body_endpoints(app)
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            if method not in _HTTP_METHODS:
                continue
            endpoint = endpoints[(path, method)]
            operation["operationId"] = operation_id(endpoint)
            declared = operation.setdefault("responses", {})
            for response in declared.values():
                # flask-openapi3 adds a description beside every $ref; the component has one.
                if "$ref" in response:
                    response.pop("description", None)
            if "requestBody" in operation:
                declared.setdefault("413", problem_response(413))
            if endpoint in json_bodies:
                declared.setdefault("400", problem_response(400))
                declared.setdefault("415", problem_response(415))
            if (not operation.get("parameters") and "requestBody" not in operation) \
                    or refuses_invalid_requests_itself(endpoint):
                # Nothing to validate, or invalid requests get the route's own problem: no 422.
                declared.pop("422", None)
            if not is_rate_limited(endpoint):
                declared.pop("429", None)
            operation["responses"] = dict(sorted(declared.items()))


def _endpoints_by_operation(app: Flask) -> dict[tuple[str, str], str]:
    found = {}
    for rule in app.url_map.iter_rules():
        path = re.sub(r"<(?:[^<:>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        for method in rule.methods or ():
            found[(path, method.lower())] = rule.endpoint
    return found


def document_yaml(app: OpenAPI) -> str:
    """The document as committed in openapi.yaml (key order kept as generated)."""
    return yaml.safe_dump(app.api_doc, sort_keys=False, allow_unicode=True, width=120)

"""Who may read /metrics: holders of METRICS_TOKEN, or addresses in METRICS_ALLOWED_NETWORKS."""
from __future__ import annotations

import hmac
import ipaddress

from shared.errors import DomainError, Forbidden, Unauthorized
from shared.settings import Settings


def scrape_refusal(settings: Settings, remote_addr: str | None, authorization: str) -> DomainError | None:
    """None when the scrape is allowed; otherwise the error to answer with (401 or 403)."""
    token = settings.metrics_token.get_secret_value()
    offered = authorization.removeprefix("Bearer ").strip()
    if token and offered and hmac.compare_digest(offered.encode(), token.encode()):
        return None
    address = ipaddress.ip_address(remote_addr or "0.0.0.0")
    networks = [ipaddress.ip_network(n.strip()) for n in settings.metrics_allowed_networks.split(",") if n.strip()]
    if any(address in network for network in networks):
        return None
    if token:
        return Unauthorized("a valid metrics bearer token is required", headers={"WWW-Authenticate": "Bearer"})
    return Forbidden("metrics are not served to this address")

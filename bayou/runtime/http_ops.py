"""The silo's operations routes: ``/metrics``, ``/dashboard`` and its data, and introspection
of one actor (``GET /v1/actors/{type}/{key}``). Mounted by ``build_http_app``."""

from __future__ import annotations

from aiohttp import web
from prometheus_client import CollectorRegistry

from bayou import wire
from bayou.errors import BadRequest
from bayou.runtime import dashboard, metrics
from bayou.runtime.http import SILO, _respond
from bayou.runtime.introspection import inspect_actor

REGISTRY: web.AppKey[CollectorRegistry] = web.AppKey("metrics_registry", CollectorRegistry)

# The page loads nothing from anywhere: inline script and style, data only from this silo.
_DASHBOARD_HEADERS = {
    "Cache-Control": "no-cache",
    "Content-Security-Policy": (
        "default-src 'none'; connect-src 'self'; script-src 'unsafe-inline'; "
        "style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
}
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"", "0", "false", "no", "off"})


def mount_operations(app: web.Application) -> None:
    silo = app[SILO]
    metrics.telemetry_of(silo)  # now, so that it sees every ring change from the start
    app[REGISTRY] = metrics.registry_for(silo)
    app.router.add_get(wire.ACTOR_ROUTE, _inspect)
    app.router.add_get(wire.METRICS_ROUTE, _metrics)
    app.router.add_get(wire.DASHBOARD_ROUTE, _dashboard)
    app.router.add_get(wire.DASHBOARD_DATA_ROUTE, _dashboard_data)


async def _metrics(request: web.Request) -> web.Response:
    """Prometheus text format, or OpenMetrics for a scraper that asks for it."""
    body, content_type = metrics.render(request.app[REGISTRY], request.headers.get("Accept"))
    return web.Response(body=body, headers={"Content-Type": content_type})


async def _dashboard(request: web.Request) -> web.Response:
    return web.Response(
        body=dashboard.page(), content_type="text/html", charset="utf-8",
        headers=_DASHBOARD_HEADERS,
    )  # fmt: skip


async def _dashboard_data(request: web.Request) -> web.Response:
    response = _respond(request, await dashboard.cluster_stats(request.app[SILO]))
    response.headers["Cache-Control"] = "no-store"
    return response


async def _inspect(request: web.Request) -> web.Response:
    """The actor's owner, status, journal position and state; ``?activate=true`` loads it
    first (otherwise an inactive actor is described from storage)."""
    key = request.match_info["key"]
    problem = wire.key_problem(key)
    if problem is not None:
        raise BadRequest(problem, {"field": "key"})
    raw = request.query.get("activate", "").lower()
    if raw not in _TRUE | _FALSE:
        raise BadRequest("query parameter 'activate' must be true or false", {"field": "activate"})
    described = await inspect_actor(
        request.app[SILO], request.match_info["type"], key, activate=raw in _TRUE
    )
    return _respond(request, described)

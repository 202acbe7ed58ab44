"""Health checks and metrics: public, cheap, never rate limited."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from chatgate.api.deps import ContainerDep
from chatgate.domain.errors import ChatgateError

router = APIRouter(tags=["health"])


@router.get("/health", name="health.seed", summary="Liveness in the seeds' format")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/health/live", name="health.live", summary="The process is up")
async def live() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/health/ready",
    name="health.ready",
    summary="Dependencies answer (database, keyring, Redis and broker when configured)",
    responses={503: {"description": "A dependency is down"}},
)
async def ready(container: ContainerDep, response: Response) -> dict[str, Any]:
    checks: dict[str, str] = {}
    for name, probe in container.readiness_probes().items():
        try:
            await probe()
            checks[name] = "ok"
        except ChatgateError as exc:
            checks[name] = f"error: {exc.message}"
        except Exception as exc:  # noqa: BLE001 - a probe must report, not crash the endpoint
            checks[name] = f"error: {type(exc).__name__}"
    healthy = all(v == "ok" for v in checks.values())
    response.status_code = 200 if healthy else 503
    return {"status": "ok" if healthy else "unavailable", "checks": checks}


@router.get("/metrics", name="metrics", summary="Prometheus metrics", response_class=Response)
async def metrics(container: ContainerDep) -> Response:
    return Response(generate_latest(container.registry), media_type=CONTENT_TYPE_LATEST)

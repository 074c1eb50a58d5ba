"""The composition: one application from the settings, served traced, closed whole; the worker
check counts the declared replicas."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from distillguard.app import Application, check_workers, create_application
from distillguard.errors import ConfigurationError
from distillguard.gateway.testing import BASE_URL, make_settings


def test_the_application_is_served_traced_and_closed_whole(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    application = create_application(settings)
    assert isinstance(application, Application) and application.console is not None
    assert application.operations.ping()

    async def go() -> httpx.Response:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=application), base_url=BASE_URL
        ) as c:
            return await c.get("/healthz", headers={"x-request-id": "ignored-by-design"})

    r = asyncio.run(go())
    assert r.status_code == 200 and r.headers["x-request-id"].startswith("gx_")
    application.close()
    assert not application.operations.ping()  # its connection is closed with the rest


def test_console_disabled_is_not_built(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    settings.console.enabled = False
    application = create_application(settings)
    try:
        assert application.console is None
    finally:
        application.close()


def test_a_failed_assembly_raises_the_configuration_error(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, upstream="openai")  # no upstream_url
    with pytest.raises(ConfigurationError, match="upstream_url"):
        create_application(settings)


@pytest.mark.parametrize(
    ("workers", "replicas", "refused"), [(1, 1, False), (2, 1, True), (1, 2, True), (1, 1, False)]
)
def test_workers_times_replicas_with_in_process_state(
    tmp_path: Path, workers: int, replicas: int, refused: bool
) -> None:
    settings = make_settings(tmp_path, replicas=replicas)
    if not refused:
        check_workers(settings, workers)
        return
    with pytest.raises(ConfigurationError) as err:
        check_workers(settings, workers)
    assert err.value.details["workers"] == workers * replicas
    assert ("replicas" in err.value.message) == (replicas > 1)


def test_shared_state_allows_workers_and_replicas(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path, replicas=3, rate_limits="redis", passport={"replay_cache": "redis"}
    )
    check_workers(settings, 4)

"""`rightsdesk run` starts on its embedded defaults, stays up, and stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

RIGHTSDESK = [sys.executable, "-m", "rightsdesk"]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RIGHTSDESK_")}
    env.update(extra)
    return env


def _wait_for_line(proc: subprocess.Popen[str], needle: str, timeout: float) -> list[str]:
    assert proc.stderr is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        if needle in line:
            return lines
    proc.kill()
    raise AssertionError(f"never saw {needle!r}; stderr was:\n{''.join(lines)}")


def _run_until_sigterm(cwd: Path, env: dict[str, str]) -> tuple[float, int, str]:
    proc = subprocess.Popen(
        [*RIGHTSDESK, "run"], cwd=cwd, env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        _wait_for_line(proc, "rightsdesk ready", timeout=60)
        time.sleep(1.0)  # it stays up
        assert proc.poll() is None, "the service exited by itself"
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=10)
        elapsed = time.monotonic() - sent
        rest = proc.stderr.read() if proc.stderr else ""
        return elapsed, code, rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.slow
def test_run_on_embedded_defaults_and_stop_on_sigterm(tmp_path: Path) -> None:
    elapsed, code, rest = _run_until_sigterm(tmp_path, _env())
    assert code == 0, rest
    assert elapsed < 5.0
    assert "stopped" in rest
    # A fresh folder gives a fresh desk, under ./var/.
    assert (tmp_path / "var" / "rightsdesk.db").is_file()


@pytest.mark.slow
def test_run_on_postgresql_and_stop_on_sigterm(tmp_path: Path, postgres_database: str) -> None:
    elapsed, code, rest = _run_until_sigterm(
        tmp_path, _env(RIGHTSDESK_DATABASE__URL=postgres_database)
    )
    assert code == 0, rest
    assert elapsed < 5.0
    assert not (tmp_path / "var" / "rightsdesk.db").exists()


def test_bad_configuration_stops_start_up_with_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [*RIGHTSDESK, "run"],
        cwd=tmp_path,
        env=_env(RIGHTSDESK_DESK__TIMEZONE="Asia/Atlantis"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: config: desk.timezone: Value error, unknown time zone 'Asia/Atlantis'"
    )


def test_smtp_port_in_use_is_named_not_a_database_problem(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [*RIGHTSDESK, "run"],
            cwd=tmp_path,
            env=_env(RIGHTSDESK_SMTP__PORT=str(port)),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        f"error: cannot listen for SMTP on 127.0.0.1:{port}: Address already in use"
    )


@pytest.mark.parametrize("command", [["run"], ["tickets", "list"]], ids=" ".join)
def test_unreachable_database_is_one_line(tmp_path: Path, command: list[str]) -> None:
    result = subprocess.run(
        [*RIGHTSDESK, *command],
        cwd=tmp_path,
        env=_env(RIGHTSDESK_DATABASE__URL="postgresql+asyncpg://postgres@127.0.0.1:1/none"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1].startswith("error: database unreachable:")
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_the_console_is_served_and_sigterm_still_stops_everything(tmp_path: Path) -> None:
    """uvicorn installs its own signal handlers in serve(); ours must still rule."""
    import httpx

    from tests.conftest import free_port

    port = free_port()
    proc = subprocess.Popen(
        [*RIGHTSDESK, "run"],
        cwd=tmp_path,
        env=_env(
            RIGHTSDESK_SMTP__PORT="0",
            RIGHTSDESK_CONSOLE__PORT=str(port),
            RIGHTSDESK_PORTAL__PORT="0",
        ),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lines = _wait_for_line(proc, "rightsdesk ready", timeout=60)
        assert f"console=http://127.0.0.1:{port}" in lines[-1]
        assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10).text == "ok"
        login = httpx.get(f"http://127.0.0.1:{port}/login", timeout=10)
        assert login.status_code == 200
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=10)
        rest = proc.stderr.read() if proc.stderr else ""
        assert code == 0, rest
        assert time.monotonic() - sent < 5.0
        assert "stopped" in rest
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("door", ["console", "portal"])
def test_a_web_port_in_use_is_named_before_any_task_starts(tmp_path: Path, door: str) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ports = {"console": "0", "portal": "0", door: str(port)}
        result = subprocess.run(
            [*RIGHTSDESK, "run"],
            cwd=tmp_path,
            env=_env(
                RIGHTSDESK_SMTP__PORT="0",
                RIGHTSDESK_CONSOLE__PORT=ports["console"],
                RIGHTSDESK_PORTAL__PORT=ports["portal"],
            ),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        f"error: cannot listen for the {door} on 127.0.0.1:{port}: Address already in use"
    )
    # Bound before the scheduler's first tick: no tick is cancelled mid-query (a traceback).
    assert "Traceback" not in result.stderr, result.stderr


async def test_uvicorn_does_not_take_over_the_signal_handlers(tmp_path: Path) -> None:
    """In the service's own loop: while the console serves, SIGTERM is still the service's
    (recent uvicorn replaces the handlers inside serve() unless told not to)."""
    import asyncio

    import httpx

    from rightsdesk.config import Settings
    from rightsdesk.service import run_service
    from tests.conftest import free_port

    port = free_port()
    portal_port = free_port()
    settings = Settings(
        database={"url": f"sqlite+aiosqlite:///{tmp_path / 'desk.db'}"},
        desk={"data_dir": tmp_path / "var"},
        outbound={"outbox_dir": tmp_path / "var" / "outbox"},
        classifier={"enabled": False},
        smtp={"enabled": False},
        scheduler={"enabled": False},
        console={"port": port},
        portal={"port": portal_port},
    )
    service = asyncio.create_task(run_service(settings))
    async with httpx.AsyncClient() as client:
        for each in (port, portal_port):  # the console and the portal: one loop, one stop
            for _ in range(200):
                try:
                    if (await client.get(f"http://127.0.0.1:{each}/healthz")).text == "ok":
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
            else:
                raise AssertionError(f"nothing answered on port {each}")
    handler = signal.getsignal(signal.SIGTERM)
    assert "uvicorn" not in getattr(handler, "__module__", "") + repr(handler)
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(service, timeout=10)
    async with httpx.AsyncClient() as client:
        for each in (port, portal_port):
            with pytest.raises(httpx.TransportError):
                await client.get(f"http://127.0.0.1:{each}/healthz", timeout=2)

"""A real console server for the HTTP and browser tests: uvicorn on a free loopback port, run
by a thread of its own (its own event loop), over a real database, with a frozen clock the
tests move. `call` runs a core coroutine on the server's loop, to set up tickets."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
import shutil
import threading
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from sqlmodel import delete

from console.app import build_app
from console.server import ConsoleServer
from rightsdesk.clock import FrozenClock
from rightsdesk.config import Settings
from rightsdesk.models import Channel, RequestType
from rightsdesk.models_staff import LoginThrottle
from rightsdesk.service import Desk
from rightsdesk.templating import Templates
from rightsdesk.tickets import Contact, NewTicket

T = TypeVar("T")
PASSWORD = "password-for-tests-1"
# name -> (role, interface language)
PEOPLE = {"dora": ("dpo", "en"), "alan": ("agent", "en"), "audrey": ("auditor", "zh")}


class ConsoleUnderTest:
    def __init__(self, settings: Settings, clock: FrozenClock) -> None:
        self.settings = settings
        self.clock = clock
        self.loop: asyncio.AbstractEventLoop | None = None
        self.desk: Desk | None = None
        self.port = 0
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="console-under-test", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ConsoleUnderTest:
        self._thread.start()
        if not self._ready.wait(120):
            raise RuntimeError("the console did not start")
        if self._failed is not None:
            raise RuntimeError("the console did not start") from self._failed
        return self

    def stop(self) -> None:
        if self.loop is not None and self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:
            self._failed = exc
            self._ready.set()

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        desk = Desk.build(self.settings, self.clock)
        self.desk = desk
        try:
            await desk.db.migrate()
            for name, (role, language) in PEOPLE.items():
                await desk.staff.add(name, f"{name}@example.com", role, PASSWORD, language)
            replies = Templates(None, self.settings.desk.company_name).replies()
            app = build_app(
                self.settings.console,
                desk.tickets,
                desk.staff,
                "",
                desk.answers,
                replies,
                search=desk.search,
                merger=desk.merger,
                fulfilment=desk.fulfilment,
                packages=desk.packages,
            )
            self.app = app
            server = ConsoleServer(self.settings.console, app)
            self.port = server.bind()
            self._ready.set()
            await server.run(self._stop)
        finally:
            await desk.close()

    def call(self, work: Callable[[Desk], Awaitable[T]]) -> T:
        """Run `work(desk)` on the server's loop and wait for its result."""
        assert self.loop is not None
        assert self.desk is not None
        desk = self.desk

        async def run() -> T:
            return await work(desk)

        future: Future[T] = asyncio.run_coroutine_threadsafe(run(), self.loop)
        return future.result(60)

    def open_ticket(self, **fields: Any) -> str:
        """A ticket as the DPO would enter one; returns its id."""
        new = NewTicket(
            channel=fields.pop("channel", Channel.EMAIL),
            contact=fields.pop("contact", Contact.email("someone@example.com")),
            types=fields.pop("types", [RequestType.ACCESS]),
            received_at=fields.pop("received_at", self.clock.now()),
            **fields,
        )

        async def work(desk: Desk) -> str:
            return (await desk.tickets.open(new, actor="test")).public_id

        return self.call(work)

    def client(
        self, local_address: str | None = None, forwarded_for: str | None = None
    ) -> httpx.Client:
        transport = httpx.HTTPTransport(local_address=local_address) if local_address else None
        headers = {"x-forwarded-for": forwarded_for} if forwarded_for else None
        return httpx.Client(base_url=self.url, transport=transport, headers=headers, timeout=30)


def database_for(request: pytest.FixtureRequest, folder: Path, kind: str | None = None) -> str:
    """A migrated, empty desk database of the fixture's kind (`request.param`): a copy of the
    SQLite template, or the session's PostgreSQL database emptied."""
    from tests.conftest import _truncate_all

    if (kind or request.param) == "sqlite":
        template: Path = request.getfixturevalue("sqlite_template")
        shutil.copyfile(template, folder / "desk.db")
        return f"sqlite+aiosqlite:///{folder / 'desk.db'}"
    url: str = request.getfixturevalue("postgres_database")
    asyncio.run(_truncate_all(url))
    return url


def serve(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    start: dt.datetime,
    **settings: Any,
) -> Iterator[ConsoleUnderTest]:
    """The HTTP tests' server (a module fixture's body): on SQLite or PostgreSQL as the
    fixture is parametrised, five tickets a page, counts never reused; `settings` adds to
    the Settings (e.g. `systems`)."""
    folder = tmp_path_factory.mktemp("console")
    url = database_for(request, folder)
    built = Settings(
        database={"url": url},
        desk={"data_dir": folder / "var"},
        outbound={"outbox_dir": folder / "var" / "outbox"},
        classifier={"enabled": False},
        console={
            "port": 0,
            "page_size": 5,
            "login_max_failures": 5,
            "trusted_proxies": ["127.0.0.5"],
            "count_cache_seconds": 0,  # the tests count right after they change things
        },
        **settings,
    )
    running = ConsoleUnderTest(built, FrozenClock(start)).start()
    try:
        yield running
    finally:
        running.stop()


def clean_after_test(server: ConsoleUnderTest, start: dt.datetime) -> None:
    """Every test logs in from 127.0.0.1: one test's failed logins must not lock the next's;
    and the clock goes back to the start."""

    async def clear(desk: Desk) -> None:
        async with desk.db.transaction() as session:
            await session.exec(delete(LoginThrottle))

    server.call(clear)
    server.clock.set(start)


def login(
    client: httpx.Client, name: str, password: str = PASSWORD, totp: str = ""
) -> httpx.Response:
    form = client.get("/login")
    token = re.search(r'name="login_csrf" value="([^"]+)"', form.text)
    assert token is not None, form.text
    return client.post(
        "/login",
        data={"login_csrf": token.group(1), "name": name, "password": password, "totp": totp},
    )


def logged_in(server: ConsoleUnderTest, name: str) -> httpx.Client:
    client = server.client()
    response = login(client, name)
    assert response.status_code == 303, response.text
    return client


def form_tokens(page: str) -> tuple[str, str]:
    """(csrf, head) from a ticket page's action forms."""
    csrf = re.search(r'name="csrf" value="([^"]+)"', page)
    head = re.search(r'name="head" value="([^"]*)"', page)
    assert csrf is not None, page
    return csrf.group(1), head.group(1) if head else ""


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None, page
    return found.group(1)

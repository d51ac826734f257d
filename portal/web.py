"""What every portal route shares: its core services, the language, CSRF, rendering, the client.

No logins here: a requester proves who they are by a code mailed to an address already on
record. CSRF is a double-submit token: a random cookie (HttpOnly, SameSite=Strict) that every
form repeats in a hidden field; a POST whose field does not match is refused.
"""

from __future__ import annotations

import hashlib
import secrets
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from rightsdesk.clients import Client, client_of
from rightsdesk.config import Settings
from rightsdesk.fulfilment import FulfilmentService
from rightsdesk.languages import LANGS, normalise
from rightsdesk.package_access import PackageAccess
from rightsdesk.templating import Templates
from rightsdesk.webforms import WebForms
from rightsdesk.webstack import client_address, template_environment

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"
CSRF_COOKIE = "rd_pcsrf"
LANGUAGE_COOKIE = "rd_plang"


@dataclass
class PortalCore:
    """The core services the portal's routes call (built by rightsdesk.service)."""

    settings: Settings
    packages: PackageAccess
    forms: WebForms
    fulfilment: FulfilmentService
    templates: Templates
    key: bytes  # keys the clients' hashes (rate limits), never stored as such

    @property
    def secure(self) -> bool:
        portal = self.settings.portal
        return portal.tls or portal.public_base_url.startswith("https://")


def core_of(request: Request) -> PortalCore:
    core: PortalCore = request.app.state.portal
    return core


@cache
def strings(language: str) -> dict[str, str]:
    """The portal's wording in one language (portal/templates/strings/LANG.toml)."""
    with (TEMPLATES / "strings" / f"{language}.toml").open("rb") as handle:
        return {k: str(v) for k, v in tomllib.load(handle).items()}


def language_of(request: Request, preferred: str | None = None) -> str:
    """?lang= (then remembered), else the cookie, else the ticket's, else the browser's."""
    for candidate in (request.query_params.get("lang"), request.cookies.get(LANGUAGE_COOKIE)):
        if candidate in LANGS:
            return str(candidate)
    if preferred in LANGS:
        return str(preferred)
    accept = request.headers.get("accept-language", "").split(",")[0].split(";")[0].strip()
    if accept.lower().startswith("en"):
        return "en"
    return (normalise(accept) if accept.lower().startswith("zh") else None) or "zh"


def client(request: Request) -> Client:
    core = core_of(request)
    address = client_address(request, core.settings.portal.trusted_proxies)
    return client_of(address, request.headers.get("user-agent", ""), core.key)


def csrf_token(request: Request) -> str:
    token = request.scope.get("rd_csrf")
    if token is None:
        token = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
        request.scope["rd_csrf"] = token
    return str(token)


def csrf_ok(request: Request, form: FormData) -> bool:
    cookie = request.cookies.get(CSRF_COOKIE, "")
    given = str(form.get("csrf", ""))
    return bool(cookie) and secrets.compare_digest(
        hashlib.sha256(cookie.encode()).digest(), hashlib.sha256(given.encode()).digest()
    )


def render(
    request: Request,
    template: str,
    context: dict[str, Any],
    status_code: int = 200,
    *,
    lang: str | None = None,
) -> HTMLResponse:
    core = core_of(request)
    language = lang or language_of(request)
    token = csrf_token(request)
    html = (
        template_environment(TEMPLATES)
        .get_template(template)
        .render(
            t=strings(language),
            lang=language,
            html_lang="zh-Hans" if language == "zh" else language,
            csrf=token,
            # Where the language links go: this page, or for a form's answer the form itself.
            path=context.get("here") or (request.url.path if request.method == "GET" else "/"),
            company=core.settings.desk.company_name,
            **context,
        )
    )
    response = HTMLResponse(html, status_code=status_code)
    remember(request, response, token, language)
    return response


def remember(request: Request, response: Response, token: str, language: str) -> None:
    core = core_of(request)
    if request.cookies.get(CSRF_COOKIE) != token:
        response.set_cookie(
            CSRF_COOKIE, token, httponly=True, samesite="strict", secure=core.secure, path="/"
        )
    if request.query_params.get("lang") in LANGS:
        response.set_cookie(
            LANGUAGE_COOKIE,
            language,
            max_age=365 * 86400,
            httponly=True,
            samesite="lax",
            secure=core.secure,
            path="/",
        )


def message_page(
    request: Request, status_code: int, title: str, message: str, lang: str | None = None
) -> HTMLResponse:
    """A page that only says something (refused, not found, too many)."""
    t = strings(lang or language_of(request))
    return render(
        request,
        "message.html.j2",
        # The language links lead home: the page never repeats the URL it answers.
        {"title": t[title], "message": t[message], "here": "/"},
        status_code,
        lang=lang,
    )


async def form_of(request: Request, *, files: bool = False) -> FormData | None:
    """The form, or None when its CSRF token does not match (the caller answers 403)."""
    core = core_of(request)
    if files:
        form = await request.form(
            max_files=1, max_fields=20, max_part_size=core.settings.portal.max_upload_bytes
        )
    else:
        form = await request.form(max_files=0, max_fields=40)
    return form if csrf_ok(request, form) else None


def field(form: FormData, name: str, limit: int = 5000) -> str:
    value = form.get(name, "")
    return value[:limit] if isinstance(value, str) else ""

"""/p/<token>: a delivered package. Thin: each route is one PackageAccess call.

Every token that does not open a package now (malformed, unknown, revoked, expired, used up,
locked) gets the same 404 page, byte for byte. Files are sent as attachments, never stored by
the browser's cache (no-store comes with every response, rightsdesk.webstack).
"""

from __future__ import annotations

from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from portal.web import client, core_of, field, form_of, language_of, message_page, render
from rightsdesk.package_access import PackagePage, PackageUnavailable

SESSION_COOKIE = "rd_pkg"


def _unavailable(request: Request) -> HTMLResponse:
    return message_page(request, 404, "link_title", "link_unavailable")


def _page(request: Request, token: str, page: PackagePage, status_code: int = 200) -> Response:
    lang = language_of(request, page.lang)
    return render(
        request,
        "package.html.j2",
        {"page": page, "token": token, "here": f"/p/{token}"},
        status_code,
        lang=lang,
    )


async def package_page(request: Request) -> Response:
    token = request.path_params["token"]
    core = core_of(request)
    try:
        page = await core.packages.view(
            token, request.cookies.get(SESSION_COOKIE, ""), client(request)
        )
    except PackageUnavailable:
        return _unavailable(request)
    return _page(request, token, page)


async def send_code(request: Request) -> Response:
    token = request.path_params["token"]
    form = await form_of(request)
    if form is None:
        return message_page(request, 403, "refused_title", "csrf_failed")
    try:
        page = await core_of(request).packages.send_code(token, client(request))
    except PackageUnavailable:
        return _unavailable(request)
    return _page(request, token, page)


async def check_code(request: Request) -> Response:
    token = request.path_params["token"]
    form = await form_of(request)
    if form is None:
        return message_page(request, 403, "refused_title", "csrf_failed")
    core = core_of(request)
    try:
        page, session = await core.packages.check_code(
            token, field(form, "code", 20), client(request)
        )
    except PackageUnavailable:
        return _unavailable(request)
    response = _page(request, token, page, 200 if page.outcome in ("right", None) else 400)
    if session is not None:
        response.set_cookie(
            SESSION_COOKIE,
            session,
            max_age=core.settings.portal.session_minutes * 60,
            httponly=True,
            samesite="strict",
            secure=core.secure,
            path="/p/",
        )
    return response


async def download(request: Request) -> Response:
    token = request.path_params["token"]
    which = request.path_params.get("file_id")
    file_id = int(which) if which is not None and which.isdigit() and len(which) < 12 else None
    if which is not None and file_id is None:
        return _unavailable(request)
    try:
        got = await core_of(request).packages.download(
            token, request.cookies.get(SESSION_COOKIE, ""), file_id, client(request)
        )
    except PackageUnavailable:
        return _unavailable(request)
    fallback = "".join(c if (c.isascii() and c.isalnum()) or c in "._-" else "_" for c in got.name)
    disposition = (
        f"attachment; filename=\"{fallback or 'file'}\"; filename*=UTF-8''{quote(got.name)}"
    )
    return Response(
        got.content,
        media_type=got.content_type,
        headers={"content-disposition": disposition},
    )

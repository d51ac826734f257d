"""/request and /status: the forms for people who do not write. Thin: one WebForms call each.

The status page answers an unknown ticket or a wrong address exactly as a right one ("if the
details match, a code was sent"); a robot that fills the hidden field is answered like a person.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from portal.web import client, core_of, field, form_of, language_of, message_page, render
from rightsdesk.webforms import FORM_TYPES, FormInvalid, RateLimited, RequestForm


async def home(request: Request) -> Response:
    return render(request, "home.html.j2", {})


async def request_form(request: Request) -> Response:
    return render(request, "request.html.j2", {"types": FORM_TYPES, "given": {}, "problem": ""})


async def request_post(request: Request) -> Response:
    form = await form_of(request)
    if form is None:
        return message_page(request, 403, "refused_title", "csrf_failed")
    lang = language_of(request)
    typed = RequestForm(
        email=field(form, "email", 320),
        types=[str(v) for v in form.getlist("types") if isinstance(v, str)][:20],
        text=field(form, "text", 6000),
        lang=lang,
        name=field(form, "name", 200),
        account=field(form, "account", 200),
        phone=field(form, "phone", 40),
    )
    try:
        handle = await core_of(request).forms.start_request(
            typed, client(request), honeypot=bool(field(form, "website", 200).strip())
        )
    except FormInvalid as invalid:
        given = {"email": typed.email, "text": typed.text, "types": typed.types}
        again = {
            "types": FORM_TYPES,
            "given": given,
            "problem": f"invalid_{invalid.field}",
            "here": "/request",
        }
        return render(request, "request.html.j2", again, 400)
    except RateLimited:
        return message_page(request, 429, "slow_title", "slow_down")
    context: dict[str, object] = {
        "handle": handle,
        "action": "/request/confirm",
        "here": "/request",
        "email": typed.email.strip().lower(),
        "left": 0,
        "purpose": "request",
        "outcome": "",
    }
    return render(request, "code.html.j2", context)


async def request_confirm(request: Request) -> Response:
    form = await form_of(request)
    if form is None:
        return message_page(request, 403, "refused_title", "csrf_failed")
    handle = field(form, "handle", 64)
    done = await core_of(request).forms.confirm_request(handle, field(form, "code", 20))
    if done.outcome == "right":
        return render(request, "request_done.html.j2", {"ticket": done.ticket, "here": "/status"})
    context = {
        "handle": handle,
        "action": "/request/confirm",
        "here": "/request",
        "email": "",
        "purpose": "request",
        "outcome": done.outcome,
        "left": done.attempts_left,
    }
    return render(request, "code.html.j2", context, 400)


async def status_form(request: Request) -> Response:
    return render(request, "status.html.j2", {})


async def status_post(request: Request) -> Response:
    form = await form_of(request)
    if form is None:
        return message_page(request, 403, "refused_title", "csrf_failed")
    try:
        handle = await core_of(request).forms.start_status(
            field(form, "ticket", 40), field(form, "email", 320), client(request)
        )
    except RateLimited:
        return message_page(request, 429, "slow_title", "slow_down")
    context: dict[str, object] = {
        "handle": handle,
        "action": "/status/confirm",
        "here": "/status",
        "email": "",
        "left": 0,
        "purpose": "status",
        "outcome": "",
    }
    return render(request, "code.html.j2", context)


async def status_confirm(request: Request) -> Response:
    form = await form_of(request)
    if form is None:
        return message_page(request, 403, "refused_title", "csrf_failed")
    handle = field(form, "handle", 64)
    core = core_of(request)
    checked = await core.forms.check_status(handle, field(form, "code", 20), core.templates)
    if checked.outcome == "right" and checked.view is not None:
        view = checked.view
        lang = language_of(request, view.lang)
        names = {
            "status": core.templates.name("status", view.status, lang),
            "types": core.templates.type_names(view.types, lang) if view.types else "",
        }
        return render(
            request,
            "status_view.html.j2",
            {"view": view, "names": names, "here": "/status"},
            lang=lang,
        )
    context = {
        "handle": handle,
        "action": "/status/confirm",
        "here": "/status",
        "email": "",
        "purpose": "status",
        "outcome": checked.outcome,
        "left": checked.attempts_left,
    }
    return render(request, "code.html.j2", context, 400)

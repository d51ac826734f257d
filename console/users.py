"""The users page (DPO only): add people, disable them, reset passwords, require TOTP."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from console.actions import refusal
from console.pages import nav_context
from console.web import Console, console_of, form_of, guard, render, session_of, strings
from rightsdesk.models_staff import StaffRole
from rightsdesk.staff import StaffError, generate_password


async def _page(request: Request, notice: str = "", error: str = "", status: int = 200) -> Response:
    console: Console = console_of(request)
    return render(
        request,
        "users.html.j2",
        {
            **(await nav_context(request)),
            "users": await console.staff.everyone(),
            "roles": [r.value for r in StaffRole],
            "totp_required": await console.staff.totp_required(),
            "events": await console.staff.events(30),
            "notice": notice,
            "error": error,
        },
        status,
    )


@guard("dpo")
async def users_page(request: Request) -> Response:
    return await _page(request)


@guard("dpo")
async def add_user(request: Request) -> Response:
    console: Console = console_of(request)
    form = form_of(request)
    t = strings(session_of(request).staff.language)
    password = generate_password()
    try:
        added = await console.staff.add(
            str(form.get("name", "")),
            str(form.get("email", "")),
            str(form.get("role", "")),
            password,
            str(form.get("language", "zh")),
            actor=session_of(request).staff.actor,
        )
    except StaffError as exc:
        return await _page(request, error=refusal(t, exc), status=400)
    # Shown once, on this page only; never stored in clear.
    return await _page(request, notice=t["user_added"].format(name=added.name, password=password))


@guard("dpo")
async def user_action(request: Request) -> Response:
    console: Console = console_of(request)
    name = request.path_params["name"]
    action = request.path_params["action"]
    form = form_of(request)
    t = strings(session_of(request).staff.language)
    actor = session_of(request).staff.actor
    try:
        if action == "disable":
            if name.strip().lower() == session_of(request).staff.name.lower():  # names fold
                raise StaffError(t["cannot_disable_self"])
            await console.staff.set_disabled(name, True, actor)
        elif action == "enable":
            await console.staff.set_disabled(name, False, actor)
        elif action == "role":
            await console.staff.set_role(name, str(form.get("role", "")), actor)
        elif action == "reset-password":
            password = generate_password()
            await console.staff.reset_password(name, password, actor)
            return await _page(
                request, notice=t["password_reset"].format(name=name, password=password)
            )
        elif action == "revoke-sessions":
            await console.staff.revoke_sessions(name, actor)
        else:
            return await _page(request, error=f"no action {action!r}", status=404)
    except StaffError as exc:
        return await _page(request, error=refusal(t, exc), status=400)
    return RedirectResponse("/users", status_code=303)


@guard("dpo")
async def require_totp(request: Request) -> Response:
    console: Console = console_of(request)
    await console.staff.require_totp(
        form_of(request).get("on") == "1", session_of(request).staff.actor
    )
    return RedirectResponse("/users", status_code=303)

"""`rightsdesk users`: the people who log in to the console, and their API tokens."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer
from rich.table import Table

from rightsdesk.cli.common import JsonFlag, desk_settings, fail, out, print_json, state, with_desk
from rightsdesk.service import Desk
from rightsdesk.staff import Staff, StaffError, generate_password
from rightsdesk.views import local_time

users_app = typer.Typer(
    help="Console logins: dpo (everything), agent (works tickets), auditor (reads only).",
    no_args_is_help=True,
)

Name = Annotated[str, typer.Argument(help="The user's login name.")]


def _password_from_stdin() -> str | None:
    """A password piped in (`echo ... | rightsdesk users add ...`); None on a terminal."""
    if sys.stdin is None or sys.stdin.isatty():
        return None
    line = sys.stdin.readline().rstrip("\r\n")
    return line or None


def _run(work: Any) -> Any:
    try:
        return with_desk(work)
    except StaffError as exc:
        fail(str(exc))


def _view(staff: Staff) -> dict[str, Any]:
    return {
        "name": staff.name,
        "email": staff.email,
        "role": staff.role.value,
        "language": staff.language,
        "totp": staff.totp,
        "disabled": staff.disabled,
    }


@users_app.command("add")
def users_add(
    name: Name,
    email: Annotated[str, typer.Option("--email", help="Where the person reads mail.")],
    role: Annotated[str, typer.Option("--role", help="dpo, agent or auditor.")],
    language: Annotated[str, typer.Option("--lang", help="Console language: zh or en.")] = "zh",
    as_json: JsonFlag = False,
) -> None:
    """Add a login. The password is read from stdin, or generated and printed once."""
    given = _password_from_stdin()
    password = given or generate_password()

    async def work(desk: Desk) -> Staff:
        return await desk.staff.add(name, email, role, password, language, actor=state.actor)

    added = _run(work)
    if as_json:
        print_json({**_view(added), **({} if given else {"password": password})})
    else:
        out.print(f"added {added.name} ({added.role.value})", highlight=False)
        if not given:
            out.print(f"password (shown once): {password}", highlight=False)


@users_app.command("list")
def users_list(as_json: JsonFlag = False) -> None:
    """Every login, with role, second factor and state."""

    async def work(desk: Desk) -> list[Staff]:
        return await desk.staff.everyone()

    people = _run(work)
    if as_json:
        print_json([_view(p) for p in people])
        return
    table = Table("name", "email", "role", "lang", "totp", "state")
    for p in people:
        state = "disabled" if p.disabled else "active"
        table.add_row(p.name, p.email, p.role.value, p.language, "yes" if p.totp else "no", state)
    out.print(table)


@users_app.command("disable")
def users_disable(
    name: Name,
    enable: Annotated[bool, typer.Option("--enable", help="Enable again instead.")] = False,
) -> None:
    """Disable a login: its sessions and API tokens end at once."""

    async def work(desk: Desk) -> Staff:
        return await desk.staff.set_disabled(name, not enable, state.actor)

    done = _run(work)
    out.print(f"{done.name} {'disabled' if done.disabled else 'enabled'}", highlight=False)


@users_app.command("reset-password")
def users_reset_password(name: Name) -> None:
    """A new password (stdin, or generated and printed once); the user's sessions end."""
    given = _password_from_stdin()
    password = given or generate_password()

    async def work(desk: Desk) -> Staff:
        return await desk.staff.reset_password(name, password, state.actor)

    _run(work)
    out.print(f"password of {name} reset; their sessions have ended", highlight=False)
    if not given:
        out.print(f"new password (shown once): {password}", highlight=False)


@users_app.command("unlock")
def users_unlock(
    name: Annotated[
        str | None, typer.Argument(help="The login name whose lock to lift.", show_default=False)
    ] = None,
    address: Annotated[
        str | None,
        typer.Option("--address", help="Lift the lock on this address (IP) instead, or too."),
    ] = None,
) -> None:
    """Lift a login lock (wrong passwords) on a name, an address, or both, before it expires."""

    async def work(desk: Desk) -> list[str]:
        return await desk.staff.unlock(name, address, state.actor)

    _run(work)
    what = " and ".join(
        ([f"user {name}"] if name else []) + ([f"address {address}"] if address else [])
    )
    out.print(f"unlocked {what}: failed logins count from zero", highlight=False)


@users_app.command("token")
def users_token(
    name: Name,
    label: Annotated[str, typer.Option("--label", help="What the token is for.")] = "",
    revoke: Annotated[
        int | None, typer.Option("--revoke", help="Revoke the token with this id instead.")
    ] = None,
    list_: Annotated[bool, typer.Option("--list", help="List the user's tokens.")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Issue an API token (printed once; only its hash is kept), list or revoke tokens."""

    async def work(desk: Desk) -> Any:
        if revoke is not None:
            await desk.staff.revoke_token(name, revoke, state.actor)
            return None
        if list_:
            return await desk.staff.tokens(name)
        return await desk.staff.issue_token(name, label, state.actor)

    result = _run(work)
    if revoke is not None:
        out.print(f"token {revoke} of {name} revoked", highlight=False)
    elif list_:
        tz = desk_settings().desk.tz
        rows = [
            {
                "id": t.id,
                "label": t.label,
                "created_at": local_time(t.created_at, tz),
                "last_used_at": local_time(t.last_used_at, tz),
                "revoked": t.revoked_at is not None,
            }
            for t in result
        ]
        if as_json:
            print_json(rows)
        else:
            table = Table("id", "label", "created", "last used", "revoked")
            for r in rows:
                table.add_row(
                    str(r["id"]),
                    r["label"],
                    r["created_at"][:16],
                    (r["last_used_at"] or "")[:16],
                    "yes" if r["revoked"] else "",
                )
            out.print(table)
    else:
        token_id, token = result
        if as_json:
            print_json({"id": token_id, "token": token})
        else:
            out.print(f"token {token_id} for {name} (shown once): {token}", highlight=False)


@users_app.command("totp")
def users_totp(
    name: Name,
    remove: Annotated[bool, typer.Option("--remove", help="Remove the second factor.")] = False,
) -> None:
    """Enrol a TOTP second factor: prints the otpauth:// URI for an authenticator app."""

    async def work(desk: Desk) -> str | None:
        if remove:
            await desk.staff.remove_totp(name, state.actor)
            return None
        return await desk.staff.enrol_totp(name, state.actor)

    uri = _run(work)
    out.print(uri or f"second factor of {name} removed", highlight=False)


@users_app.command("events")
def users_events(
    limit: Annotated[int, typer.Option("--limit", help="How many, newest first.")] = 50,
    as_json: JsonFlag = False,
) -> None:
    """Who added, disabled or changed users, issued tokens, logged in, failed to (the name
    typed and the address, never the password), was locked out or unlocked."""

    async def work(desk: Desk) -> Any:
        return await desk.staff.events(limit)

    tz = desk_settings().desk.tz
    rows = [
        {
            "at": local_time(e.at, tz),
            "actor": e.actor,
            "action": e.action,
            "subject": e.subject,
            "details": e.details,
        }
        for e in _run(work)
    ]
    if as_json:
        print_json(rows)
        return
    table = Table("at", "actor", "action", "subject", "address")
    for r in rows:
        address = str(r["details"].get("address", ""))
        table.add_row(r["at"][:19], r["actor"], r["action"], r["subject"], address)
    out.print(table)


@users_app.command("require-totp")
def users_require_totp(
    on: Annotated[bool, typer.Argument(help="on or off.", parser=lambda v: v == "on")],
) -> None:
    """Require a TOTP code of every login (those without one cannot log in until enrolled)."""

    async def work(desk: Desk) -> None:
        await desk.staff.require_totp(on, state.actor)

    _run(work)
    out.print(f"TOTP {'required for everyone' if on else 'optional'}", highlight=False)

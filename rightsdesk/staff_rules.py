"""What the console's people must be: a name that is safe in a URL and a log line, an email
that looks like an address, a known role and language, always one active DPO, and a TOTP
code that has not logged in before.

Every door that adds or changes people (the console's users page, the CLI's `users`) goes
through StaffService, which applies these; each refusal carries a code the console words in
its own language (rightsdesk.refusals).
"""

from __future__ import annotations

import datetime as dt
import re
import secrets

import pyotp
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rightsdesk.models_staff import StaffRole, StaffUser
from rightsdesk.refusals import Refusal

LANGUAGES = ("zh", "en")
MIN_PASSWORD_LENGTH = 10
# A name is a path segment of the users page (/users/NAME/role) and the actor in the audit
# trail: lower-case letters, digits, dot, underscore, hyphen, and @ (some desks log in by
# email address); nothing a URL, HTML or a shell reads otherwise.
NAME = re.compile(r"[a-z0-9][a-z0-9._@-]{0,63}")
# Enough of an address to mail: one @, a dot in the domain, nothing that is not part of one.
EMAIL = re.compile(r"[^@\s<>\"(),;:\[\]\\]+@[^@\s<>\"(),;:\[\]\\]+\.[^@\s<>\"(),;:\[\]\\.]+")
MAX_EMAIL = 320


class StaffError(Refusal):
    """A refused change to the console's people; the message is for the person who asked."""


def valid_name(name: str) -> str:
    """The name as stored (case-folded), or StaffError."""
    folded = name.strip().lower()
    if NAME.fullmatch(folded) is None:
        raise StaffError(
            "a user name is 1 to 64 of a-z, 0-9, '.', '_', '-' and '@', starting with a letter "
            f"or digit; got {name[:70]!r}",
            "name_invalid",
            name=name[:70],
        )
    return folded


def valid_email(email: str) -> str:
    cleaned = email.strip().lower()
    if len(cleaned) > MAX_EMAIL or EMAIL.fullmatch(cleaned) is None:
        raise StaffError(
            f"{email[:80]!r} does not look like an email address",
            "email_invalid",
            email=email[:80],
        )
    return cleaned


def valid_language(language: str) -> str:
    if language not in LANGUAGES:
        raise StaffError(
            f"language must be one of {', '.join(LANGUAGES)}",
            "language_unknown",
            languages=", ".join(LANGUAGES),
        )
    return language


def valid_role(value: StaffRole | str) -> StaffRole:
    try:
        return StaffRole(value)
    except ValueError:
        roles = ", ".join(r.value for r in StaffRole)
        raise StaffError(
            f"unknown role {str(value)[:30]!r}; roles are: {roles}",
            "role_unknown",
            role=str(value)[:30],
            roles=roles,
        ) from None


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise StaffError(
            f"a password needs at least {MIN_PASSWORD_LENGTH} characters",
            "password_short",
            min=MIN_PASSWORD_LENGTH,
        )


async def keep_a_dpo(
    session: AsyncSession, user: StaffUser, role: StaffRole, disabled: bool
) -> None:
    """Refuse a change that leaves the desk without an active DPO: nobody could add people,
    change roles or approve fulfilment any more. The other DPOs' rows are locked, so two
    DPOs demoting each other at once cannot both pass."""
    if user.role != StaffRole.DPO or user.disabled or (role is StaffRole.DPO and not disabled):
        return
    others = (
        await session.exec(
            select(StaffUser.id)
            .where(col(StaffUser.role) == StaffRole.DPO.value)
            .where(col(StaffUser.disabled).is_(False))
            .where(col(StaffUser.id) != user.id)
            .with_for_update()
        )
    ).all()
    if not others:
        raise StaffError(
            f"{user.name} is the last active DPO; make someone else a DPO first",
            "last_dpo",
            name=user.name,
        )


def totp_step(secret: str, code: str, now: dt.datetime, last: int | None) -> int | None:
    """The time-step `code` is good for (this one or its neighbours, for clock drift), if
    it is later than `last`, the step of the last code accepted; else None."""
    totp = pyotp.TOTP(secret)
    typed = code.strip()
    current = totp.timecode(now)
    for counter in (current - 1, current, current + 1):
        if last is not None and counter <= last:
            continue
        if secrets.compare_digest(typed, totp.generate_otp(counter)):
            return counter
    return None

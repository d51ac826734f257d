"""The people who work the desk through the console: logins, roles, sessions and API tokens.

Passwords are argon2id hashes (argon2-cffi), checked off the event loop (each check costs tens
of milliseconds of CPU by design). Session cookies and API tokens are random; only their SHA-256
is stored, so a copy of the database logs nobody in. Failed logins are counted per typed name
(known or not, so an unknown name is refused exactly like a known one) and per address, in the
database, so every replica sees the same locks.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import bindparam, or_, update
from sqlalchemy import select as sa_select
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from rightsdesk.clock import Clock
from rightsdesk.config_sections import ConsoleSettings
from rightsdesk.db import Database
from rightsdesk.models_staff import (
    ApiToken,
    LoginThrottle,
    StaffEvent,
    StaffRole,
    StaffSession,
    StaffSetting,
    StaffUser,
)

# LANGUAGES and StaffError are the staff service's as much as the rules' (the doors import
# them from here).
from rightsdesk.staff_rules import LANGUAGES as LANGUAGES
from rightsdesk.staff_rules import StaffError as StaffError
from rightsdesk.staff_rules import (
    check_password,
    keep_a_dpo,
    totp_step,
    valid_email,
    valid_language,
    valid_name,
    valid_role,
)

# Sessions are touched at most this often: not every page view is a write.
_TOUCH_EVERY = dt.timedelta(seconds=30)

# A session with what `Staff` needs of its user (`Staff.of`), for `StaffService.session`.
_SESSION_OF = (
    sa_select(
        col(StaffSession.revoked_at),
        col(StaffSession.last_seen_at),
        col(StaffSession.created_at),
        col(StaffSession.csrf_token),
        col(StaffSession.user_id),
        col(StaffUser.name),
        col(StaffUser.email),
        col(StaffUser.role),
        col(StaffUser.language),
        col(StaffUser.totp_secret).is_not(None).label("totp"),
        col(StaffUser.disabled),
    )
    .join(StaffUser, col(StaffUser.id) == col(StaffSession.user_id))
    .where(col(StaffSession.id) == bindparam("session_id"))
)
_REQUIRE_TOTP = "require_totp"

_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters
# Checked against when the name is unknown, so both cases cost the same time.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


class LoginRefused(StaffError):
    """One answer for a wrong name, a wrong password, a wrong code and a lock: it tells an
    attacker nothing about which names exist."""


class TotpEnrolmentNeeded(StaffError):
    """The password was right but the desk requires a second factor this user has not set up."""


def _sha256(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def generate_password() -> str:
    return secrets.token_urlsafe(12)


@dataclass(frozen=True)
class Staff:
    """A logged-in person as the console sees them."""

    id: int
    name: str
    email: str
    role: StaffRole
    language: str
    totp: bool
    disabled: bool

    @classmethod
    def of(cls, user: StaffUser) -> Staff:
        assert user.id is not None
        return cls(
            id=user.id,
            name=user.name,
            email=user.email,
            role=StaffRole(user.role),
            language=user.language,
            totp=user.totp_secret is not None,
            disabled=user.disabled,
        )

    @property
    def actor(self) -> str:
        """Who acted, in the audit trail."""
        return f"console:{self.name}"

    @property
    def can_work(self) -> bool:
        return self.role in (StaffRole.DPO, StaffRole.AGENT)

    @property
    def is_dpo(self) -> bool:
        return self.role is StaffRole.DPO


@dataclass(frozen=True)
class LoggedIn:
    staff: Staff
    token: str  # goes in the cookie; never stored
    csrf_token: str


@dataclass(frozen=True)
class SessionView:
    staff: Staff
    session_id: str
    csrf_token: str


@dataclass(frozen=True)
class TokenView:
    id: int
    label: str
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    revoked_at: dt.datetime | None


class StaffService:
    def __init__(self, db: Database, clock: Clock, settings: ConsoleSettings) -> None:
        self.db = db
        self.clock = clock
        self.settings = settings

    # ---- people ----------------------------------------------------------------------------

    async def add(
        self,
        name: str,
        email: str,
        role: StaffRole | str,
        password: str,
        language: str = "zh",
        actor: str = "system",
    ) -> Staff:
        name = valid_name(name)
        email = valid_email(email)
        role = valid_role(role)
        check_password(password)
        valid_language(language)
        hashed = await asyncio.to_thread(_hasher.hash, password)
        async with self.db.transaction() as session:
            if await _user_named(session, name) is not None:
                raise StaffError(f"there is already a user named {name}", "user_exists", name=name)
            now = self.clock.now()
            user = StaffUser(
                name=name,
                email=email.strip().lower(),
                role=role,
                password_hash=hashed,
                language=language,
                created_at=now,
                password_changed_at=now,
            )
            session.add(user)
            await session.flush()
            self._record(session, actor, "user_added", name, role=role, email=user.email)
            return Staff.of(user)

    async def everyone(self) -> list[Staff]:
        async with self.db.reading() as session:
            users = (await session.exec(select(StaffUser).order_by(col(StaffUser.name)))).all()
            return [Staff.of(u) for u in users]

    async def get(self, name: str) -> Staff:
        async with self.db.reading() as session:
            return Staff.of(await _need_user(session, name))

    async def set_disabled(self, name: str, disabled: bool = True, actor: str = "system") -> Staff:
        async with self.db.transaction() as session:
            user = await _need_user(session, name)
            await keep_a_dpo(session, user, StaffRole(user.role), disabled)
            user.disabled = disabled
            session.add(user)
            if disabled:
                await self._revoke_all(session, user)
            self._record(session, actor, "user_disabled" if disabled else "user_enabled", name)
            return Staff.of(user)

    async def set_role(self, name: str, role: StaffRole | str, actor: str = "system") -> Staff:
        async with self.db.transaction() as session:
            user = await _need_user(session, name)
            after = valid_role(role)
            await keep_a_dpo(session, user, after, user.disabled)
            before, user.role = user.role, after
            session.add(user)
            self._record(session, actor, "role_changed", name, before=before, after=user.role)
            return Staff.of(user)

    async def reset_password(self, name: str, password: str, actor: str = "system") -> Staff:
        """A new password; every session and token of the user ends."""
        check_password(password)
        hashed = await asyncio.to_thread(_hasher.hash, password)
        async with self.db.transaction() as session:
            user = await _need_user(session, name)
            user.password_hash = hashed
            user.password_changed_at = self.clock.now()
            session.add(user)
            await self._revoke_all(session, user, tokens=False)
            # A reset also lifts a lock on the name: the DPO has just vouched for this person.
            await _clear_throttle(session, _user_key(name))
            self._record(session, actor, "password_reset", name)
            return Staff.of(user)

    async def set_language(self, user_id: int, language: str) -> None:
        valid_language(language)
        async with self.db.transaction() as session:
            user = await session.get_one(StaffUser, user_id)
            user.language = language
            session.add(user)

    # ---- second factor ---------------------------------------------------------------------

    async def enrol_totp(self, name: str, actor: str = "system") -> str:
        """A new TOTP secret for the user; returns the otpauth:// URI for an authenticator app."""
        secret = pyotp.random_base32()
        async with self.db.transaction() as session:
            user = await _need_user(session, name)
            user.totp_secret = secret
            user.totp_last_step = None  # a new secret: its codes have never been used
            session.add(user)
            self._record(session, actor, "totp_enrolled", name)
        return pyotp.TOTP(secret).provisioning_uri(name=name, issuer_name="rightsdesk")

    async def remove_totp(self, name: str, actor: str = "system") -> None:
        async with self.db.transaction() as session:
            user = await _need_user(session, name)
            user.totp_secret = None
            session.add(user)
            self._record(session, actor, "totp_removed", name)

    async def totp_required(self) -> bool:
        async with self.db.reading() as session:
            row = await session.get(StaffSetting, _REQUIRE_TOTP)
            return bool(row is not None and row.value.get("on"))

    async def require_totp(self, on: bool, actor: str = "system") -> None:
        async with self.db.transaction() as session:
            row = await session.get(StaffSetting, _REQUIRE_TOTP)
            if row is None:
                row = StaffSetting(key=_REQUIRE_TOTP, value={})
            row.value = {"on": on}
            session.add(row)
            self._record(session, actor, "totp_required" if on else "totp_optional", "")

    # ---- logging in ------------------------------------------------------------------------

    async def login(
        self, name: str, password: str, address: str, totp_code: str | None = None
    ) -> LoggedIn:
        """A new session, or LoginRefused with the same words whatever went wrong."""
        name = name.strip()
        keys = (_user_key(name), _address_key(address))
        now = self.clock.now()
        async with self.db.reading() as session:
            locked = await _locked(session, keys, now)
            user = await _user_named(session, name) if name else None
            required = await session.get(StaffSetting, _REQUIRE_TOTP)
        # Always pay for one hash check, so a lock or an unknown name answers no faster.
        stored = user.password_hash if user is not None else _DUMMY_HASH
        good = await asyncio.to_thread(_verify, stored, password)
        if locked:
            # The same answer as a wrong password, right password or not (no oracle); the
            # attempt is recorded, not counted: the lock already holds.
            async with self.db.transaction() as session:
                self._record(
                    session, "system", "login_failed", name, address=address[:64], locked=True
                )
            raise LoginRefused("login refused")
        step: int | None = None
        if user is not None and user.totp_secret is not None and good:
            step = totp_step(user.totp_secret, totp_code or "", now, user.totp_last_step)
            good = step is not None
        if not good or user is None or user.disabled:
            await self._failed(name, address, now)
            raise LoginRefused("login refused")
        if user.totp_secret is None and required is not None and required.value.get("on"):
            raise TotpEnrolmentNeeded("a second factor is required: ask a DPO to enrol you")
        assert user.id is not None
        if step is not None and not await self._claim_step(user.id, step):
            # Another login took this code first (the same code twice, at once or later).
            await self._failed(name, address, now)
            raise LoginRefused("login refused")
        token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        async with self.db.transaction() as session:
            session.add(
                StaffSession(
                    id=_sha256(token),
                    user_id=user.id,
                    csrf_token=csrf,
                    address=address[:64],
                    created_at=now,
                    last_seen_at=now,
                )
            )
            await _clear_throttle(session, keys[0])
            self._record(session, f"console:{user.name}", "login", user.name, address=address)
        return LoggedIn(Staff.of(user), token, csrf)

    async def _claim_step(self, user_id: int, step: int) -> bool:
        """Record `step` as the user's last accepted TOTP step, if it is later than the one
        recorded: one conditional UPDATE, so of two logins with one code only one wins."""
        async with self.db.transaction() as session:
            claimed = await session.exec(
                update(StaffUser)
                .where(col(StaffUser.id) == user_id)
                .where(
                    or_(
                        col(StaffUser.totp_last_step).is_(None),
                        col(StaffUser.totp_last_step) < step,
                    )
                )
                .values(totp_last_step=step)
            )
            return bool(claimed.rowcount == 1)

    async def _failed(self, name: str, address: str, now: dt.datetime) -> None:
        """Count a refused login against the typed name and the address, and record it (the
        name as typed and the address; never the password)."""
        window = dt.timedelta(minutes=self.settings.login_lock_minutes)
        limits = (
            (_user_key(name), self.settings.login_max_failures),
            (_address_key(address), self.settings.login_max_failures_per_address),
        )
        async with self.db.transaction() as session:
            self._record(session, "system", "login_failed", name, address=address[:64])
            for key, limit in limits:
                row = await session.get(LoginThrottle, key, with_for_update=True)
                if row is None:
                    row = LoginThrottle(key=key, failures=0)
                if row.first_failure_at is None or now - row.first_failure_at > window:
                    row.failures, row.first_failure_at = 0, now
                row.failures += 1
                if row.failures >= limit:
                    row.locked_until = now + window
                    row.failures, row.first_failure_at = 0, None
                    self._record(session, "system", "login_locked", key)
                session.add(row)

    async def unlock(
        self, name: str | None = None, address: str | None = None, actor: str = "system"
    ) -> list[str]:
        """Lift the lock (and the count of failures) on a login name, an address, or both:
        what a DPO does for a colleague who mistyped, or an office locked behind one NAT.
        Returns the keys that were locked."""
        keys = ([_user_key(name)] if name else []) + ([_address_key(address)] if address else [])
        if not keys:
            raise StaffError("name a user or an --address to unlock")
        now = self.clock.now()
        async with self.db.transaction() as session:
            lifted = []
            for key in keys:
                row = await session.get(LoginThrottle, key, with_for_update=True)
                if row is not None and row.locked_until is not None and row.locked_until > now:
                    lifted.append(key)
                await _clear_throttle(session, key)
                self._record(session, actor, "login_unlocked", key, was_locked=key in lifted)
            return lifted

    async def session(self, token: str) -> SessionView | None:
        """The session of a cookie, if it is still good (not revoked, idle or too old)."""
        if not token:
            return None
        now = self.clock.now()
        session_id = _sha256(token)
        async with self.db.reading_connection() as connection:
            # One statement (every page asks this first), built once, read as a plain row.
            found = (await connection.execute(_SESSION_OF, {"session_id": session_id})).first()
        if found is None or found.revoked_at is not None:
            return None
        idle = dt.timedelta(minutes=self.settings.session_idle_minutes)
        lifetime = dt.timedelta(hours=self.settings.session_lifetime_hours)
        if found.disabled or now - found.last_seen_at > idle or now - found.created_at > lifetime:
            return None
        if now - found.last_seen_at > _TOUCH_EVERY:
            async with self.db.transaction() as session:
                fresh = await session.get_one(StaffSession, session_id)
                fresh.last_seen_at = now
                session.add(fresh)
        staff = Staff(
            id=found.user_id,
            name=found.name,
            email=found.email,
            role=StaffRole(found.role),
            language=found.language,
            totp=found.totp,
            disabled=found.disabled,
        )
        return SessionView(staff, session_id, found.csrf_token)

    async def logout(self, session_id: str) -> None:
        async with self.db.transaction() as session:
            row = await session.get(StaffSession, session_id)
            if row is not None and row.revoked_at is None:
                row.revoked_at = self.clock.now()
                session.add(row)

    async def revoke_sessions(self, name: str, actor: str = "system") -> int:
        async with self.db.transaction() as session:
            ended = await self._revoke_all(session, await _need_user(session, name), tokens=False)
            self._record(session, actor, "sessions_revoked", name, sessions=ended)
            return ended

    async def _revoke_all(self, session: AsyncSession, user: StaffUser, tokens: bool = True) -> int:
        now = self.clock.now()
        rows: list[StaffSession | ApiToken] = list(
            (
                await session.exec(
                    select(StaffSession)
                    .where(StaffSession.user_id == user.id)
                    .where(col(StaffSession.revoked_at).is_(None))
                )
            ).all()
        )
        if tokens:
            rows.extend(
                (
                    await session.exec(
                        select(ApiToken)
                        .where(ApiToken.user_id == user.id)
                        .where(col(ApiToken.revoked_at).is_(None))
                    )
                ).all()
            )
        for row in rows:
            row.revoked_at = now
            session.add(row)
        return len(rows)

    # ---- the staff's own trail ---------------------------------------------------------------

    def _record(
        self, session: AsyncSession, actor: str, action: str, subject: str, **details: object
    ) -> None:
        at = self.clock.now()
        session.add(
            StaffEvent(at=at, actor=actor, action=action, subject=subject[:100], details=details)
        )

    async def events(self, limit: int = 50) -> list[StaffEvent]:
        async with self.db.reading() as session:
            rows = await session.exec(
                select(StaffEvent).order_by(col(StaffEvent.id).desc()).limit(limit)
            )
            return list(rows.all())

    # ---- API tokens ------------------------------------------------------------------------

    async def issue_token(
        self, name: str, label: str = "", actor: str = "system"
    ) -> tuple[int, str]:
        """A new API token for the user: (its id, the token, shown this once)."""
        token = "rd_" + secrets.token_urlsafe(32)
        async with self.db.transaction() as session:
            user = await _need_user(session, name)
            if user.disabled:
                raise StaffError(f"{name} is disabled")
            assert user.id is not None
            row = ApiToken(
                user_id=user.id,
                token_hash=_sha256(token),
                label=label[:100],
                created_at=self.clock.now(),
            )
            session.add(row)
            await session.flush()
            assert row.id is not None
            self._record(session, actor, "token_issued", name, token=row.id, label=row.label)
            return row.id, token

    async def tokens(self, name: str) -> list[TokenView]:
        async with self.db.reading() as session:
            user = await _need_user(session, name)
            rows = (
                await session.exec(
                    select(ApiToken).where(ApiToken.user_id == user.id).order_by(col(ApiToken.id))
                )
            ).all()
            return [
                TokenView(r.id or 0, r.label, r.created_at, r.last_used_at, r.revoked_at)
                for r in rows
            ]

    async def revoke_token(self, name: str, token_id: int, actor: str = "system") -> None:
        async with self.db.transaction() as session:
            user = await _need_user(session, name)
            row = await session.get(ApiToken, token_id)
            if row is None or row.user_id != user.id:
                raise StaffError(f"{name} has no token {token_id}")
            if row.revoked_at is None:
                row.revoked_at = self.clock.now()
                session.add(row)
                self._record(session, actor, "token_revoked", name, token=token_id)

    async def token_user(self, token: str) -> Staff | None:
        if not token:
            return None
        now = self.clock.now()
        async with self.db.reading() as session:
            row = (
                await session.exec(select(ApiToken).where(ApiToken.token_hash == _sha256(token)))
            ).first()
            if row is None or row.revoked_at is not None:
                return None
            user = await session.get_one(StaffUser, row.user_id)
        if user.disabled:
            return None
        if row.last_used_at is None or now - row.last_used_at > _TOUCH_EVERY:
            async with self.db.transaction() as session:
                fresh = await session.get_one(ApiToken, row.id)
                fresh.last_used_at = now
                session.add(fresh)
        return Staff.of(user)


def _verify(stored: str, password: str) -> bool:
    try:
        return _hasher.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def _user_key(name: str) -> str:
    return "user:" + name.strip().lower()[:150]


def _address_key(address: str) -> str:
    return "addr:" + address[:150]


async def _user_named(session: AsyncSession, name: str) -> StaffUser | None:
    # Names are stored case-folded (staff_rules.valid_name); one added before that is still
    # found as it was written.
    typed = name.strip()
    found = (
        await session.exec(select(StaffUser).where(col(StaffUser.name).in_({typed, typed.lower()})))
    ).all()
    return next((u for u in found if u.name == typed), found[0] if found else None)


async def _need_user(session: AsyncSession, name: str) -> StaffUser:
    user = await _user_named(session, name)
    if user is None:
        raise StaffError(f"no user named {name[:70]}", "no_user", name=name[:70])
    return user


async def _locked(session: AsyncSession, keys: Sequence[str], now: dt.datetime) -> bool:
    rows = (await session.exec(select(LoginThrottle).where(col(LoginThrottle.key).in_(keys)))).all()
    return any(r.locked_until is not None and r.locked_until > now for r in rows)


async def _clear_throttle(session: AsyncSession, key: str) -> None:
    row = await session.get(LoginThrottle, key)
    if row is not None:
        await session.delete(row)

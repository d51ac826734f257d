"""Which failures pass by themselves: a full disk, a locked or restarting database, a lost
connection. Those are retried with back-off; anything else is a bug that a person must see."""

from __future__ import annotations

import errno
import sqlite3

from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

# SQLSTATE classes of PostgreSQL that are about the moment, not the statement: connection
# exceptions, insufficient resources (disk full, too many connections), operator
# intervention (a terminated backend, a restart), and transaction rollback (serialisation,
# deadlock).
_PG_TRANSIENT_CLASSES = ("08", "53", "57", "40")
_OS_TRANSIENT = {
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EIO,
    errno.EAGAIN,
    errno.ENOMEM,
    errno.EMFILE,
    errno.ENFILE,
    errno.EROFS,
}
# SQLite says what is wrong only in words: these are about the moment (a schema error such as
# "no such column" is an OperationalError too, and is not).
_SQLITE_TRANSIENT_WORDS = ("locked", "busy", "disk", "i/o", "unable to open", "out of memory")


def is_transient(exc: BaseException) -> bool:
    """True for a failure worth trying again later with the same input."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _transient_here(current):
            return True
        orig = getattr(current, "orig", None)  # SQLAlchemy's wrapper: the driver's error
        if isinstance(orig, BaseException) and id(orig) not in seen and is_transient(orig):
            return True
        current = current.__cause__ or current.__context__
    return False


def _transient_here(exc: BaseException) -> bool:
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, InterfaceError):  # the driver lost its connection
        return True
    if isinstance(exc, OperationalError | sqlite3.OperationalError):
        text = str(exc).lower()
        if any(word in text for word in _SQLITE_TRANSIENT_WORDS):
            return True
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    if isinstance(exc, OSError):
        return exc.errno in _OS_TRANSIENT
    sqlstate = getattr(exc, "sqlstate", None)
    return isinstance(sqlstate, str) and sqlstate[:2] in _PG_TRANSIENT_CLASSES

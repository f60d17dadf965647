"""Faults of the study storage turned into one located line, and Ctrl-C held off while it is written.

:class:`StorageError` (a ``ValueError``: the CLI exits 2 with its message) says where (the database
file or the URL, password hidden), what went wrong (the database's own words: ``database or disk is
full``, ``file is not a database``, ``connection refused``), and that the finished trials are kept.
"""
from __future__ import annotations

import contextlib
import errno
import functools
import inspect
import signal
import threading
from typing import Iterator

import optuna.storages
import sqlalchemy.engine
import sqlalchemy.exc
from optuna.exceptions import StorageInternalError

__all__ = ["StorageError", "storage_errors", "is_storage_error", "where", "deferred_interrupts", "signal_safe",
           "SignalSafeRDBStorage", "SignalSafeJournalStorage"]

# errno values that mean "the disk cannot be written", not "this trial is bad"
_STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG}


class StorageError(ValueError):
    """The study's storage cannot be opened or written (exit 2; nothing finished is lost)."""


def where(url: str) -> str:
    """``sqlite:////a/b/study.db`` -> ``/a/b/study.db``; a server URL without its password."""
    if url.startswith("sqlite:///"):
        return url[len("sqlite:///"):].split("?")[0] or url
    if url.startswith("journal:"):
        return url[len("journal:"):]
    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:   # noqa: BLE001 -- not a URL SQLAlchemy can parse: show it as given
        return url


def _chain(e: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


def is_storage_error(e: BaseException) -> bool:
    """True when ``e`` (or what caused it) comes from the database or a full / read-only disk."""
    for x in _chain(e):
        if isinstance(x, (sqlalchemy.exc.SQLAlchemyError, StorageInternalError)):
            return True
        if isinstance(x, OSError) and x.errno in _STORAGE_ERRNOS:
            return True
    return False


def _reason(e: BaseException) -> str:
    """The innermost useful words: the DB-API error's first line, or the OS error's."""
    for x in _chain(e):
        if isinstance(x, sqlalchemy.exc.DBAPIError) and x.orig is not None:
            return str(x.orig).strip().splitlines()[0] if str(x.orig).strip() else type(x.orig).__name__
        if isinstance(x, OSError) and x.strerror:
            return x.strerror
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


def _advice(reason: str, url: str) -> str:
    low = reason.lower()
    if "full" in low or "no space" in low or "quota" in low:
        return "free some space and run the same command again to resume"
    if "not a database" in low or "malformed" in low or "file is encrypted" in low:
        return "it was left untouched: move it away (or pick another --out / --storage) to start a new study"
    if "readonly" in low or "read-only" in low or "permission" in low or "unable to open" in low:
        return "make it writable or pick another --out / --storage"
    if "can't load plugin" in low or "could not parse" in low:
        return "expected sqlite:///FILE, postgresql://..., mysql://... or journal:FILE"
    if "no module named" in low:
        return "install the database driver (pip install 'archdsl[postgres]' for PostgreSQL)"
    return "check that the database is reachable and run the same command again to resume"


@contextlib.contextmanager
def storage_errors(url: str, *, doing: str = "", kept: bool = False) -> Iterator[None]:
    """Re-raise a storage fault inside the block as one :class:`StorageError` line (``kept``: say
    that the finished trials are kept, for faults while the study is written)."""
    try:
        yield
    except StorageError:
        raise
    except Exception as e:   # noqa: BLE001 -- filtered right below
        if not (is_storage_error(e) or isinstance(e, ModuleNotFoundError)):
            raise
        reason = _reason(e)
        raise StorageError(f"{where(url)}: {doing + ': ' if doing else ''}{reason} "
                           f"({'finished trials are kept; ' if kept else ''}{_advice(reason, url)})") from e


_HELD: list[int] = []      # signals received while held (main thread)
_DEPTH = 0                  # nesting of deferred_interrupts blocks (main thread)


@contextlib.contextmanager
def deferred_interrupts() -> Iterator[None]:
    """Hold SIGINT / SIGTERM while the block runs and raise ``KeyboardInterrupt`` after it, so a burst
    of Ctrl-C's cannot stop a trial half-told (main thread only; elsewhere the block runs as is).
    Blocks nest: the outermost one installs the holding handlers and raises on exit."""
    global _DEPTH
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if _DEPTH:
        _DEPTH += 1
        try:
            yield
        finally:
            _DEPTH -= 1
        return
    previous = {s: signal.signal(s, lambda signum, frame: _HELD.append(signum)) for s in (signal.SIGINT, signal.SIGTERM)}
    _DEPTH = 1
    try:
        yield
    finally:
        _DEPTH = 0
        for s, handler in previous.items():
            signal.signal(s, handler)
        if _HELD:
            _HELD.clear()
            raise KeyboardInterrupt


def signal_safe(cls: type) -> type:
    """A subclass of the storage class ``cls`` whose public methods run under
    :func:`deferred_interrupts`: a Ctrl-C that lands inside a database call is raised after it, never
    inside SQLAlchemy or the SQLite driver. (Raised there, it leaves a connection holding SQLite's
    write lock, referenced by the exception's traceback, and the ``tell`` that records the
    interrupted trial then waits on that lock until the busy timeout.)"""
    def wrap(fn):
        @functools.wraps(fn)
        def held(self, *args, **kwargs):
            with deferred_interrupts():
                return fn(self, *args, **kwargs)
        return held

    methods = {name: wrap(getattr(cls, name)) for name in dir(cls)
               if not name.startswith("_") and inspect.isfunction(getattr(cls, name, None))}
    name = f"SignalSafe{cls.__name__}"
    return type(name, (cls,), {"__module__": __name__, "__qualname__": name, "__doc__": cls.__doc__, **methods})


SignalSafeRDBStorage = signal_safe(optuna.storages.RDBStorage)           # module level: picklable
SignalSafeJournalStorage = signal_safe(optuna.storages.JournalStorage)

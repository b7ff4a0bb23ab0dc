"""What the SFTP and S3 drops share: retries with backoff, ``drop_unreachable``, resumable reads.

A remote drop classifies every failure of its client (:meth:`RemoteDrop._classify`): a transient
one (a refused or dropped connection, a timeout, a throttled request) is retried a few times with
a growing wait, on a fresh connection; a permanent one (refused credentials, an unknown host key)
is not; either way the last one becomes :class:`~audtools.drops.base.DropUnreachable`, naming the
drop's URL and the cause. Errors that are answers (no such file, a name taken) pass through as
``FileNotFoundError`` and ``FileExistsError``.

Reads are streamed (:class:`ResumingReader`): a connection broken mid-file is reopened at the
offset reached, so a transient break costs a retry, not the whole file, and memory stays bounded
by the buffer whatever the file's size.
"""

from __future__ import annotations

import abc
import errno
import io
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO, Literal, TypeVar

from audtools.drops.base import Drop, DropUnreachable

__all__ = ["RemoteDrop", "ResumingReader", "Retry", "Upload", "buffered"]

log = logging.getLogger("audtools")

T = TypeVar("T")
#: What a failure is: worth another try, a refusal not worth one, or an answer to pass on.
Kind = Literal["transient", "refused", "answer"]
#: ``OSError`` numbers that are answers about a file, not failures of the connection.
ANSWERS = frozenset({
    errno.ENOENT, errno.EEXIST, errno.ELOOP, errno.EISDIR, errno.ENOTDIR, errno.EACCES,
    errno.EPERM, errno.EINVAL, errno.ENAMETOOLONG, errno.ENOSPC, errno.EDQUOT, errno.EROFS,
})

#: Bytes gathered before each write to the server.
WRITE_BUFFER = 1 << 20
#: Bytes asked of the server per read: large enough to keep SFTP's pipelined requests and S3's
#: ranged reads busy, small enough to keep memory bounded.
READ_BUFFER = 1 << 20


@dataclass(frozen=True)
class Retry:
    """How often and how patiently a transient failure is retried.

    Attributes:
        tries: attempts in all (the first included).
        first_wait: seconds before the second attempt; each later wait doubles.
        max_wait: the longest wait between two attempts.
    """

    tries: int = 4
    first_wait: float = 0.5
    max_wait: float = 8.0

    def wait(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (from 1)."""
        return float(min(self.max_wait, self.first_wait * 2 ** (attempt - 1)))


class RemoteDrop(Drop):
    """A drop behind a network connection: calls go through :meth:`_call`, which retries.

    Subclasses connect lazily (:meth:`_connect`), drop a broken connection (:meth:`_reset`),
    and sort their client's exceptions (:meth:`_classify`, :meth:`_cause`).
    """

    retry: Retry = Retry()

    @abc.abstractmethod
    def _reset(self) -> None:
        """Forget the connection, so that the next call connects afresh."""

    @abc.abstractmethod
    def _classify(self, exc: BaseException) -> Kind:
        """Whether ``exc`` is transient, a refusal, or an answer to pass on as it is."""

    @staticmethod
    def _is_answer(exc: BaseException) -> bool:
        """Whether ``exc`` is an ``OSError`` that answers about a file (no such file, a link,
        no room ...) rather than a failure of the connection."""
        answers = (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError,
                   PermissionError)
        return isinstance(exc, answers) or (isinstance(exc, OSError) and exc.errno in ANSWERS)

    def _cause(self, exc: BaseException) -> str:
        """``exc`` in a few words, for the error message."""
        text = str(exc).strip() or type(exc).__name__
        return text if len(text) < 300 else text[:300] + "..."

    def _unreachable(self, what: str, exc: BaseException, tries: int) -> DropUnreachable:
        after = f" (after {tries} tries)" if tries > 1 else ""
        return DropUnreachable(
            f"The drop {self.url} cannot be reached while {what}{after}: {self._cause(exc)}. "
            "Check the network, the server and the credentials, then run again.",
            drop=self.url,
        )

    def _call(self, what: str, fn: Callable[[], T], *, on_retry: Callable[[], None] | None = None) -> T:
        """``fn()``, retried on transient failures; the last failure as ``drop_unreachable``.

        Args:
            what: what is being done ("listing", "reading NAME"), for messages.
            fn: the operation; it connects itself (through the subclass) when needed.
            on_retry: called before each retry, after the connection is dropped.
        """
        attempt = 0
        while True:
            attempt += 1
            try:
                return fn()
            except DropUnreachable:
                raise
            except Exception as exc:  # noqa: BLE001 - sorted right below
                kind = self._classify(exc)
                if kind == "answer":
                    raise
                if kind == "refused" or attempt >= self.retry.tries:
                    self._reset()
                    raise self._unreachable(what, exc, attempt) from exc
                wait = self.retry.wait(attempt)
                log.warning("drop %s: %s failed (%s); trying again in %g s", self.url, what,
                            self._cause(exc), wait)
                self._reset()
                if on_retry is not None:
                    on_retry()
                time.sleep(wait)


class ResumingReader(io.RawIOBase):
    """A remote file read as a stream; a broken transfer resumes where it stopped.

    Args:
        drop: the drop (its :meth:`RemoteDrop._call` retries).
        name: the file's name, for messages.
        open_at: opens the file on the current connection, positioned at the given offset.
    """

    def __init__(self, drop: RemoteDrop, name: str, open_at: Callable[[int], Any]) -> None:
        super().__init__()
        self._drop = drop
        self._name = name
        self._open_at = open_at
        self._fh: Any = None
        self._pos = 0
        self._fh = drop._call(f"opening {name}", lambda: open_at(0))

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move to ``offset`` (zip archives are read from their end): the next read reopens the
        file there."""
        if whence == io.SEEK_CUR:
            offset += self._pos
        elif whence == io.SEEK_END:
            entry = self._drop.stat(self._name)
            if entry is None:
                raise FileNotFoundError(errno.ENOENT, f"{self._name} is gone from {self._drop.url}")
            offset += entry.size
        if offset != self._pos:
            self._forget()
            self._pos = max(0, offset)
        return self._pos

    def _forget(self) -> None:
        fh, self._fh = self._fh, None
        if fh is not None:
            try:
                fh.close()
            except Exception:  # noqa: BLE001 - the connection is already gone
                log.debug("closing %s after a failure", self._name, exc_info=True)

    def _read(self, size: int) -> bytes:
        if self._fh is None:
            self._fh = self._open_at(self._pos)
        data: bytes = self._fh.read(size)
        return data

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self._drop._call(
            f"reading {self._name}", lambda: self._read(len(view)), on_retry=self._forget
        )
        n = len(data)
        view[:n] = data
        self._pos += n
        return n

    def close(self) -> None:
        if not self.closed:
            self._forget()
        super().close()


def buffered(reader: ResumingReader) -> BinaryIO:
    """``reader`` behind a buffer, as :meth:`~audtools.drops.base.Drop.open` returns it."""
    return io.BufferedReader(reader, buffer_size=READ_BUFFER)  # type: ignore[return-value]


class Upload(io.RawIOBase):
    """The raw side of a remote drop's :meth:`~audtools.drops.base.Drop.create`.

    An upload is not resumed: a failure fails it with ``drop_unreachable`` (and the export that
    writes it is undone and can run again). Once it failed, closing it does not talk to the
    server again, beyond ``abandon``.

    Args:
        drop: the drop, whose :meth:`RemoteDrop._classify` sorts failures.
        name: the file's name, for messages.
        write: sends bytes.
        finish: completes the file (flush, make durable, close).
        abandon: releases what a failed upload holds, best effort.
    """

    def __init__(
        self,
        drop: RemoteDrop,
        name: str,
        write: Callable[[bytes], Any],
        finish: Callable[[], None],
        *,
        abandon: Callable[[], None] | None = None,
    ) -> None:
        super().__init__()
        self._drop, self._name = drop, name
        self._send, self._finish, self._abandon = write, finish, abandon
        self._failed = False
        self._written = 0

    def writable(self) -> bool:
        return True

    def _once(self, fn: Callable[[], Any]) -> Any:
        if self._failed:
            raise OSError(f"the upload of {self._name} failed already")
        try:
            return fn()
        except Exception as exc:
            self._failed = True
            if self._abandon is not None:
                try:
                    self._abandon()
                except Exception:  # noqa: BLE001 - best effort: the connection may be gone
                    log.debug("abandoning %s", self._name, exc_info=True)
            if self._drop._classify(exc) == "answer":
                raise
            self._drop._reset()
            raise self._drop._unreachable(f"writing {self._name}", exc, 1) from exc

    def write(self, data: Any) -> int:
        payload = bytes(data)
        self._once(lambda: self._send(payload))
        self._written += len(payload)
        return len(payload)

    def tell(self) -> int:
        """Bytes sent so far (the size of the file once it is closed)."""
        return self._written

    def close(self) -> None:
        if self.closed:
            return
        try:
            if not self._failed:
                self._once(self._finish)
        finally:
            super().close()

    def buffered(self) -> BinaryIO:
        """This upload behind a write buffer, as :meth:`~audtools.drops.base.Drop.create`
        returns it."""
        return io.BufferedWriter(self, buffer_size=WRITE_BUFFER)  # type: ignore[return-value]

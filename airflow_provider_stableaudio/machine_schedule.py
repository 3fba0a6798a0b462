"""One key's request schedule shared by every process on one machine, through a small locked file.

A worker's task processes come and go (each submits once and is gone) and a machine runs several of
them beside one or two triggerers: budgets that each process keeps to itself cannot see each other,
so a fan-out's submits arrive together, a lockout's end wakes them together, and a new task process
starts at a rate the key was refused at a minute ago. The processes of a machine that use one key
therefore keep a few figures in one file, under ``flock``: when the key may send next, until when
a 429 paused it, the rate the machine was sending at when it was refused and when, and a count of
the latest turns. Each request first takes its turn there; a 429 anywhere on the machine pauses
every process, and every process (a new one too) lowers its rate from what the machine sent.
Several machines still share a key as before: each backs off on its own 429s
(:mod:`.request_budget`).

Times are ``time.monotonic()`` seconds: one clock for every process of a machine (Linux's
``CLOCK_MONOTONIC``). A figure further ahead than :data:`HORIZON` is stale (the clock restarted
with the machine) and is read as none. No Airflow imports; callers pass ``now``.
"""

from __future__ import annotations

import fcntl
import logging
import os
import stat
import struct
import tempfile
import threading
from dataclasses import dataclass
from typing import ClassVar

log = logging.getLogger(__name__)

# Figures further ahead than this are left from before a restart of the machine's clock.
HORIZON = 3600.0
# The rate a 429 refused is what the machine sent over this long before it (a limit's usual window).
WINDOW = 10.0
# A rate refused is remembered this long: growth stops below it (until another 429 measures
# another).
REFUSED_RATE_MEMORY = 600.0
# A caller reads its clock a moment before it gets the file: a figure written meanwhile by another
# process may stand a little ahead of the caller's ``now`` (further ahead: from before a restart).
SKEW = 60.0
NEVER = float("-inf")
_EPSILON = 1e-6
_WARNED: set[str] = set()
_WARNED_LOCK = threading.Lock()


def default_directory() -> str:
    """Where the schedules live unless configured: the user's own folder in the temporary one."""
    return os.path.join(tempfile.gettempdir(), f"airflow-stableaudio-budgets-{os.geteuid()}")


@dataclass(frozen=True)
class Turn:
    """What a process learns when it asks for the key's turn.

    :param wait: 0: the turn is taken (the request may go); else the seconds until it may be.
    :param paused_until: until when a 429 paused the key on this machine (or -inf).
    :param refused_rate: the machine's requests per second that the latest 429 refused (or 0).
    :param refused_at: when that 429 came (or -inf).
    """

    wait: float
    paused_until: float = NEVER
    refused_rate: float = 0.0
    refused_at: float = NEVER


class MachineSchedule:
    """The schedule of one key on this machine (a file named by the key's one-way fingerprint).

    Opened lazily and again after a fork (a lock held through a file shared with the parent
    would not exclude it). If the folder is not this user's alone, or cannot be made, the schedule
    is off: the process keeps to its own budget, and says so once.

    :param directory: the folder shared by the machine's processes.
    :param name: the file's name: a fingerprint of the host and the key, never the key.
    """

    def __init__(self, directory: str, name: str) -> None:
        self.path = os.path.join(directory, name)
        self._directory = directory
        self._fd: int | None = None
        self._pid: int | None = None
        self._off = False

    def turn(self, now: float, interval: float, *, saved: float = 0.0) -> Turn:
        """Take the key's next turn on this machine if it is due.

        :param interval: the seconds the turn keeps the key's next request back (the caller's rate).
        :param saved: seconds of turns not taken that may still be taken now (a small burst).
        """
        fd = self._open()
        if fd is None:
            return Turn(0.0)
        with _Locked(fd):
            record = self._read(fd, now)
            due = max(record.next_at, record.paused_until)
            # A hair early is due: a caller that waited exactly ``due - now`` may land a rounding
            # error short of ``due`` (and a clock at a million seconds would never get past it).
            if due <= now + _EPSILON:
                record.next_at = max(record.next_at, now - saved) + interval
                record.count_turn(now)
                record.resumed_turns += 1
                os.pwrite(fd, record.pack(), 0)
                return Turn(0.0, record.paused_until, record.refused_rate, record.refused_at)
            return Turn(due - now, record.paused_until, record.refused_rate, record.refused_at)

    def refused(self, now: float, until: float) -> tuple[float, float, bool]:
        """A 429: every process of the machine holds the key's requests until ``until``.

        :return: ``(refused_rate, refused_at, measured)``: the rate the machine was sending at
            (requests per second over the last :data:`WINDOW` seconds) when its latest measured
            429 paused it, which every process learns from, when that was (``(0, -inf)`` with the
            schedule off), and whether this 429 was measured: a new pause, after more than one
            turn since the last ended. The probe refused as a pause ends went almost alone (a
            process starting later would learn to crawl from it); a process's first request after
            a pause it adopted is no such probe once others have sent.
        """
        fd = self._open()
        if fd is None:
            return 0.0, NEVER, False
        with _Locked(fd):
            record = self._read(fd, now)
            # Not for a 429 to a request sent before the pause began: the pause accounts for it.
            new_pause = now >= record.paused_until
            measured = new_pause and record.resumed_turns > 1
            if measured:
                # The latest, not the highest: news to every process. A key refused again at a
                # lower rate than before (the first measure, over a fan-out's first seconds, may
                # stand high) has to stay below it, or it creeps back into the limit again and
                # again; and each process that did not meet the 429 lowers its rate too.
                record.refused_rate = record.sent_rate(now)
                record.refused_at = now
            if new_pause:
                record.resumed_turns = 0.0
            record.paused_until = max(record.paused_until, until)
            os.pwrite(fd, record.pack(), 0)
            return record.refused_rate, record.refused_at, measured

    def _read(self, fd: int, now: float) -> _Record:
        data = os.pread(fd, _Record.FORMAT.size, 0)
        if len(data) == _Record.FORMAT.size:
            record = _Record(*_Record.FORMAT.unpack(data))
        elif len(data) == _EIGHT_FIGURES.size:  # a version before the count of turns since a pause
            record = _Record(*_EIGHT_FIGURES.unpack(data))
        else:
            return _Record()
        # A figure further ahead than the horizon (a 429's time: than the skew) is from before the
        # clock restarted.
        ahead = max(
            record.next_at - now - HORIZON,
            record.paused_until - now - HORIZON,
            record.refused_at - now - SKEW,
        )
        if ahead > 0:
            return _Record()
        return record

    def _open(self) -> int | None:
        if self._off:
            return None
        pid = os.getpid()
        if self._fd is not None and self._pid == pid:
            return self._fd
        if self._fd is not None:  # forked: the parent's descriptor shares its locks; open our own
            os.close(self._fd)
            self._fd = None
        try:
            os.makedirs(self._directory, mode=0o700, exist_ok=True)
            info = os.lstat(self._directory)
            if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
                # Another user's folder (or a link to one) could hold the key back or learn its rate.
                raise PermissionError(f"{self._directory} is not a folder of this user's alone")
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            self._off = True
            with _WARNED_LOCK:
                if self._directory not in _WARNED:
                    _WARNED.add(self._directory)
                    log.warning("The request budget is kept per process, not shared on this machine: %s", exc)
            return None
        self._pid = pid
        return self._fd


@dataclass
class _Record:
    """The file's figures; turns are counted in two buckets of half a window each."""

    FORMAT: ClassVar[struct.Struct] = struct.Struct("<9d")

    next_at: float = NEVER
    paused_until: float = NEVER
    refused_rate: float = 0.0
    refused_at: float = NEVER
    bucket_start: float = NEVER
    count: float = 0.0
    previous_count: float = 0.0
    previous_start: float = NEVER
    resumed_turns: float = 0.0  # turns taken since the latest pause ended

    def pack(self) -> bytes:
        return self.FORMAT.pack(
            self.next_at,
            self.paused_until,
            self.refused_rate,
            self.refused_at,
            self.bucket_start,
            self.count,
            self.previous_count,
            self.previous_start,
            self.resumed_turns,
        )

    def count_turn(self, now: float) -> None:
        self._roll(now)
        self.count += 1

    def sent_rate(self, now: float) -> float:
        """Turns per second since the older bucket began (at most a window, at least a second)."""
        self._roll(now)
        start = self.previous_start if self.previous_count else self.bucket_start
        return (self.count + self.previous_count) / max(1.0, min(WINDOW, now - start))

    def _roll(self, now: float) -> None:
        elapsed = now - self.bucket_start
        if elapsed >= WINDOW / 2:
            recent = elapsed < WINDOW
            self.previous_count = self.count if recent else 0.0
            self.previous_start = self.bucket_start if recent else NEVER
            self.bucket_start = now
            self.count = 0.0


# The file as a version before ``resumed_turns`` wrote it (and still reads it: the first eight).
_EIGHT_FIGURES = struct.Struct("<8d")


class _Locked:
    """``flock`` held for a read and a write: microseconds, so waiting for it blocks no one long."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def __enter__(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)

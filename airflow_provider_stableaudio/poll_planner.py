"""When a generation is worth polling: by need, from what this event loop has seen. No Airflow imports.

Generations of one model and clip length take about as long as each other. The planner groups the
waits of one loop (a triggerer's) that way and learns, from the ones that finished, how soon a new
one can be done: a wait polls first then, and every ``poll_interval`` after. A group that has seen
nothing finish yet sends a few scouts (about the square root of its waits, the oldest first) at
every interval; the others hold their polls until a scout comes back finished or leaves. So the key's
budget goes to the polls that can find something, and a clip costs about one poll more than nothing.
"""

from __future__ import annotations

import asyncio
import math
import random
import weakref
from collections import deque
from dataclasses import dataclass, field

# Finished waits remembered per group: enough for a low quantile, recent enough to follow a change.
REMEMBERED = 50
# The quantile of the learned "not ready yet" times a wait's first poll comes at: early enough that
# few clips are ready long before it.
EARLIEST_QUANTILE = 0.1
# Clip lengths are grouped by this many seconds: a 10 s and a 20 s jingle take about as long to
# generate; a 180 s track takes longer.
CLIP_SECONDS_STEP = 30

GroupKey = tuple[str, str, int]


def group_key(service: str, model: str | None, clip_seconds: float | None) -> GroupKey:
    """The group of a generation: its service, model and clip length (rounded up by 30 s)."""
    bucket = -1 if clip_seconds is None else math.ceil(max(clip_seconds, 1) / CLIP_SECONDS_STEP)
    return (service, model or "", bucket)


@dataclass
class _Group:
    # (elapsed at the last "not ready" poll or None, elapsed at the poll that found it finished)
    finished: deque[tuple[float | None, float]] = field(default_factory=lambda: deque(maxlen=REMEMBERED))
    live: dict[str, None] = field(default_factory=dict)  # waits, in the order they joined
    changed: asyncio.Event = field(default_factory=asyncio.Event)


class PollPlanner:
    """The poll schedule of one event loop's waits (see the module's docstring)."""

    def __init__(self) -> None:
        self._groups: dict[GroupKey, _Group] = {}

    def join(self, key: GroupKey, generation_id: str) -> None:
        self._groups.setdefault(key, _Group()).live[generation_id] = None

    def leave(self, key: GroupKey, generation_id: str) -> None:
        """The wait ended (finished, failed, timed out, cancelled): a scout's place goes to the next."""
        group = self._groups.get(key)
        if group is None:
            return
        group.live.pop(generation_id, None)
        self._wake(group)
        if not group.live and not group.finished:
            del self._groups[key]

    def finished(self, key: GroupKey, *, not_ready_at: float | None, ready_at: float) -> None:
        """A wait of ``key`` saw its generation finished ``ready_at`` seconds after it was submitted,
        having last seen it unfinished ``not_ready_at`` seconds after (``None``: never)."""
        group = self._groups.setdefault(key, _Group())
        group.finished.append((not_ready_at, ready_at))
        self._wake(group)

    def earliest(self, key: GroupKey, poll_interval: float) -> float | None:
        """Seconds after submission a generation of ``key`` may first be done; ``None``: not known yet.

        From waits that finished: the low quantile of the last times they were seen unfinished, when
        that was within two intervals of finishing (a close bound); else the first finish seen, less
        one interval.
        """
        group = self._groups.get(key)
        if group is None or not group.finished:
            return None
        close = sorted(lo for lo, hi in group.finished if lo is not None and hi - lo <= 2 * poll_interval)
        if close:
            return close[int(EARLIEST_QUANTILE * (len(close) - 1))]
        return max(0.0, min(hi for _, hi in group.finished) - poll_interval)

    def is_scout(self, key: GroupKey, generation_id: str) -> bool:
        """Whether the wait polls while its group has seen nothing finish: one of the oldest
        ``ceil(sqrt(n))`` of the group's ``n`` waits."""
        group = self._groups.get(key)
        if group is None:
            return True
        scouts = math.ceil(math.sqrt(len(group.live)))
        for rank, live_id in enumerate(group.live):
            if rank >= scouts:
                return False
            if live_id == generation_id:
                return True
        return True  # not joined: polls as a wait of its own

    def next_poll(
        self,
        key: GroupKey,
        generation_id: str,
        *,
        submitted_at: float,
        last_poll: float | None,
        poll_interval: float,
        now: float,
    ) -> float | None:
        """The time (as ``now``, wall seconds) of the wait's next poll; ``None``: hold it until the
        group changes (:meth:`changed`), as it has seen nothing finish and this wait is no scout."""
        if last_poll is not None:
            # Polled already: every interval from now on. (The learned time only places first polls:
            # the waits that finish last would otherwise push it, and every later poll, late.)
            return blind_next_poll(last_poll, poll_interval, now)
        earliest = self.earliest(key, poll_interval)
        if earliest is not None:
            return max(now, submitted_at + earliest)
        due = blind_next_poll(None, poll_interval, now)
        if self.is_scout(key, generation_id):
            return due
        return None

    def changed(self, key: GroupKey) -> asyncio.Event:
        """Set when the group learns something or a wait leaves it (a held wait looks again)."""
        return self._groups.setdefault(key, _Group()).changed

    @staticmethod
    def _wake(group: _Group) -> None:
        group.changed.set()
        group.changed = asyncio.Event()


def blind_next_poll(last_poll: float | None, poll_interval: float, now: float) -> float:
    """The next poll of a wait that knows nothing of how long it takes: 90-100 % of the interval
    after the last (polls spread, never later than asked), a first one spread over one interval (waits
    deferred or restarted together would otherwise all poll in one turn of the loop)."""
    if last_poll is None:
        return now + random.uniform(0, poll_interval)
    return last_poll + poll_interval * random.uniform(0.9, 1.0)


_PLANNERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, PollPlanner] = weakref.WeakKeyDictionary()


def planner() -> PollPlanner:
    """The running event loop's planner (a triggerer's lives as long as its loop)."""
    return _PLANNERS.setdefault(asyncio.get_running_loop(), PollPlanner())

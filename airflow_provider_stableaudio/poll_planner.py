"""When a generation is worth polling: by need, from what this event loop has seen. No Airflow imports.

Generations of one model and clip length take about as long as each other. The planner groups the
waits of one loop (a triggerer's) that way and learns, from the ones that finished, how soon a new
one can be done: a wait polls first then, and every ``poll_interval`` after. A group that has seen
nothing finish yet sends a few scouts (about the square root of its waits, the oldest first) at
every interval; the others hold their polls until a scout comes back finished or they become scouts
themselves (the group grew, or a scout left). So the key's budget goes to the polls that can find
something, and a clip costs about one poll more than nothing.
"""

from __future__ import annotations

import asyncio
import itertools
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
    # Waits holding their polls, each woken on its own: all when the group learns something, one
    # when it becomes a scout (waking all on every join would cost the square of the waits).
    held: dict[str, asyncio.Event] = field(default_factory=dict)


class PollPlanner:
    """The poll schedule of one event loop's waits (see the module's docstring)."""

    def __init__(self) -> None:
        self._groups: dict[GroupKey, _Group] = {}

    def join(self, key: GroupKey, generation_id: str) -> None:
        """A wait begins. Waits join one by one as the triggerer starts them, so the group's scouts
        grow in number as it does: a held wait that becomes one is woken."""
        group = self._groups.setdefault(key, _Group())
        group.live[generation_id] = None
        self._promote(group)

    def leave(self, key: GroupKey, generation_id: str) -> None:
        """The wait ended (finished, failed, timed out, cancelled): a scout's place goes to the next."""
        group = self._groups.get(key)
        if group is None:
            return
        group.live.pop(generation_id, None)
        group.held.pop(generation_id, None)
        self._promote(group)
        if not group.live and not group.finished:
            del self._groups[key]

    def finished(self, key: GroupKey, *, not_ready_at: float | None, ready_at: float) -> None:
        """A wait of ``key`` saw its generation finished ``ready_at`` seconds after it was submitted,
        having last seen it unfinished ``not_ready_at`` seconds after (``None``: never)."""
        group = self._groups.setdefault(key, _Group())
        group.finished.append((not_ready_at, ready_at))
        for event in group.held.values():  # every held wait now knows when to poll
            event.set()
        group.held.clear()

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
        if group is None or generation_id not in group.live:
            return True  # not joined: polls as a wait of its own
        return generation_id in self._scouts(group)

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
        """The time (as ``now``, wall seconds) of the wait's next poll; ``None``: hold it until
        :meth:`held` says to look again, as its group has seen nothing finish and it is no scout."""
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

    def held(self, key: GroupKey, generation_id: str) -> asyncio.Event:
        """Set when the held wait should look again: its group saw a wait finish, or it became a
        scout. (Its own: the others are not woken for it.)"""
        group = self._groups.setdefault(key, _Group())
        event = group.held.get(generation_id)
        if event is None:
            event = group.held[generation_id] = asyncio.Event()
        return event

    @staticmethod
    def _scouts(group: _Group) -> list[str]:
        """The group's oldest ``ceil(sqrt(n))`` waits."""
        return list(itertools.islice(group.live, math.ceil(math.sqrt(len(group.live)))))

    def _promote(self, group: _Group) -> None:
        if group.held:
            for generation_id in self._scouts(group):
                event = group.held.pop(generation_id, None)
                if event is not None:
                    event.set()


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

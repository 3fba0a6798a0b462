"""One API key's request budget in this process: a rate, a pause after a 429, one probe after it.

Every call a process makes with a key (a worker's submit, poll and fetch; a triggerer's polls across
all its triggers) takes a slot from the same :class:`KeyBudget`, found by :func:`budget_for` from the
API's host and the key. A service that says no (429) stops every request of that key in the process
until its lockout ends, and then hears from one request (the probe) before the others resume, at a
lower rate and spread out. The processes of one machine share the key's turns and pauses through a
:class:`~.machine_schedule.MachineSchedule` (so the rate is the machine's); machines share a key
without talking to each other: each backs off on a 429 and creeps back up slowly (additive increase,
multiplicative decrease), so that together they settle under the key's limit.

No Airflow imports, no clock of its own: callers pass ``now`` (monotonic seconds) and do the waiting,
so a worker sleeps, the triggerer awaits, and tests drive the time.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from airflow_provider_stableaudio.machine_schedule import REFUSED_RATE_MEMORY, MachineSchedule, Turn

if TYPE_CHECKING:
    from collections.abc import Callable

    from airflow_provider_stableaudio.services import Service

# With no rate configured and none documented, a key starts here and adapts: it doubles every
# SLOW_START_EVERY seconds while callers wait for slots, until the first 429 (then it creeps).
START_RATE = 10.0
SLOW_START_EVERY = 2.0
# The slowest a budget goes after 429s: one request every five seconds.
MIN_RATE = 0.2
# At most this many seconds of the rate are saved up (never less than one request): below 4 a
# second, one request at a time; above, a few go in one turn of the event loop. A 10 s window then
# holds 2.5 % more than the rate at most. Waking a triggerer's loop once for a few requests, not
# once for each, is most of what a poll costs its CPU while the budget holds polls back.
BURST_SECONDS = 0.25
# A 429 halves the rate sent (once per pause: the 429s of requests sent before it say nothing new);
# while callers take most slots and nothing is refused, it grows by INCREASE_STEP (or 5 %, the
# larger) every INCREASE_EVERY seconds.
DECREASE = 0.5
INCREASE_EVERY = 5.0
INCREASE_STEP = 0.5
# The rate refused by a 429 is what was sent over this long before it: a limit's usual window. That
# rate (the latest measured) is remembered REFUSED_RATE_MEMORY seconds, and growth stops
# below 90 % of it: a sliding-window limit refuses again as soon as that rate comes back.
RATE_WINDOW = 10.0
# A 429 with no Retry-After from a service that documents no lockout: pauses from 1 s, doubled
# after each 429 in a row, up to a minute.
FIRST_PAUSE = 1.0
LONGEST_UNKNOWN_PAUSE = 60.0
# The probe after a pause is answered within this, or the budget resumes without its answer (a
# synchronous generation may take minutes to answer).
PROBE_PATIENCE = 10.0
# Float sums of refills fall a hair short of a whole token: that hair is no reason to wait.
_EPSILON = 1e-9


@dataclass
class Slot:
    """A request the budget let through; its answer (or its failure) goes back through
    :meth:`KeyBudget.answered` or :meth:`KeyBudget.unanswered`.

    :param epoch: the budget's pause count when it was granted: a 429 to a request sent before the
        latest pause says nothing new about the rate.
    :param probe: the one request sent after a pause.
    """

    epoch: int
    probe: bool = False


class KeyBudget:
    """The request budget of one key at one host, shared by every caller in this process.

    Thread-safe; every method takes ``now``, monotonic seconds, from the caller's clock.

    :param label: how logs name the key (never the key itself): the host and a short fingerprint.
    :param max_rate: requests per second at most (the connection's ``max_requests_per_second``
        or the service's default); ``None``: no ceiling, the rate adapts from :data:`START_RATE`.
    :param lockout_seconds: how long the service refuses a key after a 429 without ``Retry-After``
        (Stability: 60); ``None``: unknown, paused from :data:`FIRST_PAUSE`, doubling.
    :param machine: the key's turns and pauses shared with the machine's other processes (``None``:
        this process on its own).
    """

    def __init__(
        self,
        *,
        label: str,
        max_rate: float | None,
        lockout_seconds: float | None,
        machine: MachineSchedule | None = None,
    ) -> None:
        self.label = label
        self._machine = machine
        self.max_rate = max_rate
        self.lockout_seconds = lockout_seconds
        self.rate = max_rate if max_rate is not None else START_RATE
        self._slow_start = max_rate is None
        self.paused_until = float("-inf")
        self.pauses = 0  # 429s that paused the key, ever (the epoch of slots)
        self._lock = threading.Lock()
        self._tokens = 1.0
        self._filled_at: float | None = None
        self._pauses_in_a_row = 0
        self._probe_sent_at: float | None = None  # a probe is out, unanswered
        self._probe_due = False  # the next slot is the probe
        self._grown_at: float | None = None
        self._sent_since_grown = 0
        self._refused_rate: float | None = None
        self._refused_at = float("-inf")
        self._learned_at = float("-inf")  # the machine's latest 429 this budget has learned from
        self.sent = 0
        self.refused = 0
        self._recent: deque[float] = deque()  # send times of the last RATE_WINDOW seconds
        self._first_sent: float | None = None

    # -- taking a slot ------------------------------------------------------------------------

    def take(self, now: float, *, gather: int = 1) -> Slot | float:
        """A slot for a request to go now, or the seconds to wait before asking again.

        :param gather: when no slot is free, wait until this many are (at most what the burst
            holds): a caller handing slots to many waiters then wakes once for several.
        """
        with self._lock:
            if now < self.paused_until:
                return self.paused_until - now
            if self._probe_sent_at is not None:
                if now - self._probe_sent_at < PROBE_PATIENCE:
                    # Wait for the probe's answer; its answer ends the wait early for whoever listens.
                    return min(1.0, PROBE_PATIENCE - (now - self._probe_sent_at))
                self._probe_sent_at = None  # no answer in time: resume without it
            self._refill(now)
            if self._tokens < 1.0 - _EPSILON:
                wanted = max(1, min(gather, math.floor(self._capacity())))
                return (wanted - self._tokens) / self.rate
            if self._machine is not None:
                turn = self._machine.turn(now, 1.0 / self.rate, saved=(self._capacity() - 1.0) / self.rate)
                self._learn(turn, now)
                if turn.wait > 0:
                    if turn.paused_until > max(now, self.paused_until):
                        # Another process of the machine met a 429: pause and resume as after one's own.
                        self._pause(now, turn.paused_until - now, adopted=True)
                        return self.paused_until - now
                    return turn.wait
            self._tokens = max(0.0, self._tokens - 1.0)
            self.sent += 1
            self._recent_within(now).append(now)
            self._sent_since_grown += 1
            if self._first_sent is None:
                self._first_sent = now
            probe = self._probe_due
            if probe:
                self._probe_due = False
                self._probe_sent_at = now
            return Slot(epoch=self.pauses, probe=probe)

    def _capacity(self) -> float:
        return max(1.0, self.rate * BURST_SECONDS)

    def _refill(self, now: float) -> None:
        if self._filled_at is not None:
            # Small bursts only: at most BURST_SECONDS of the rate (one request below 4 a second)
            # is saved up, so a window of a sliding-window limit (150 per 10 s) sees at most 2.5 %
            # more than the rate.
            self._tokens = min(self._capacity(), self._tokens + (now - self._filled_at) * self.rate)
        self._filled_at = now

    # -- the answer ---------------------------------------------------------------------------

    def answered(self, slot: Slot, now: float, *, limited: bool, retry_after: float | None = None) -> float:
        """Record the answer to ``slot``'s request; return the seconds the key is paused (``0``: not).

        :param limited: the service answered 429.
        :param retry_after: its ``Retry-After`` (or the service's documented lockout), if any.
        """
        with self._lock:
            if slot.probe:
                self._probe_sent_at = None
            if not limited:
                if slot.probe or slot.epoch == self.pauses:
                    self._pauses_in_a_row = 0
                self._grow(now)
                return max(0.0, self.paused_until - now)
            self.refused += 1
            if slot.epoch != self.pauses and now < self.paused_until:
                # Sent before the pause began: the pause already accounts for it.
                return self.paused_until - now
            self._pause(now, retry_after)
            return self.paused_until - now

    def unanswered(self, slot: Slot) -> None:
        """The request of ``slot`` got no answer (a network failure): a probe's place is freed."""
        with self._lock:
            if slot.probe:
                self._probe_sent_at = None
                self._probe_due = True

    def _pause(self, now: float, retry_after: float | None, *, adopted: bool = False) -> None:
        """Pause after a 429; ``adopted``: another process's pause on the machine, kept as it is
        (never lengthened, or processes adopting each other's would lengthen it in turn; its rate
        was learned from the machine's schedule, :meth:`_learn`)."""
        if retry_after is None:
            retry_after = self.lockout_seconds
        if retry_after is None:
            retry_after = min(LONGEST_UNKNOWN_PAUSE, FIRST_PAUSE * 2**self._pauses_in_a_row)
        if not adopted:
            # Never shorter than the first pause: "Retry-After: 0" must not turn 429s into a busy loop.
            retry_after = max(retry_after, FIRST_PAUSE)
        self._pauses_in_a_row += 1
        self.pauses += 1
        self.paused_until = max(self.paused_until, now + retry_after)
        machine_rate, measured = 0.0, False
        if not adopted and self._machine is not None:
            machine_rate, self._learned_at, measured = self._machine.refused(now, self.paused_until)
        # Not the probe refused as a pause ends: it measures one request (a process's first request
        # after a pause it adopted is no probe once the machine has sent others: ``measured``).
        if not adopted and (self._pauses_in_a_row == 1 or measured):
            # The rate that was refused: what was actually sent over the last window (the budget's
            # own figure may stand far above what its callers asked for), by the whole machine
            # when its processes share the key's schedule.
            first_sent = now if self._first_sent is None else self._first_sent
            window = min(RATE_WINDOW, max(1.0, now - first_sent))
            refused_rate = len(self._recent_within(now)) / window
            self._refused(now, max(refused_rate, machine_rate))
        # Resume with one request, then spread out: no saved-up burst.
        self._tokens = 1.0
        self._filled_at = self.paused_until
        self._probe_due = True
        self._probe_sent_at = None
        self._grown_at = self.paused_until
        self._sent_since_grown = 0

    def _refused(self, now: float, refused_rate: float) -> None:
        """Halve from ``refused_rate`` and remember it as a ceiling (the latest measured: a lower
        one than before means the limit, or the key's other users, leave less)."""
        self._refused_rate = refused_rate
        self._refused_at = now
        self.rate = min(
            self.max_rate if self.max_rate is not None else float("inf"),
            max(MIN_RATE, min(self.rate, refused_rate) * DECREASE),
        )
        self._slow_start = False

    def _learn(self, turn: Turn, now: float) -> None:
        """A 429 on the machine this process has not heard of (any process's, before this one
        started too): lower the rate from what the machine was sending, as after one's own."""
        if turn.refused_at <= self._learned_at or now - turn.refused_at >= REFUSED_RATE_MEMORY:
            return
        self._learned_at = turn.refused_at
        if turn.refused_rate > 0:
            self._refused(turn.refused_at, turn.refused_rate)

    def _grow(self, now: float) -> None:
        if self._grown_at is None:
            self._grown_at = now
        every = SLOW_START_EVERY if self._slow_start else INCREASE_EVERY
        elapsed = now - self._grown_at
        if elapsed < every:
            return
        # Grown only when used: callers took most of the slots the rate gave since it last grew.
        used = self._sent_since_grown >= 0.8 * self.rate * elapsed
        self._grown_at = now
        self._sent_since_grown = 0
        if not used:
            return
        ceiling = self.max_rate if self.max_rate is not None else float("inf")
        if self._refused_rate is not None and now - self._refused_at < REFUSED_RATE_MEMORY:
            ceiling = min(ceiling, 0.9 * self._refused_rate)
        if self.rate < ceiling:
            grown = 2 * self.rate if self._slow_start else self.rate + max(INCREASE_STEP, 0.05 * self.rate)
            self.rate = min(ceiling, grown)

    def _recent_within(self, now: float) -> deque[float]:
        while self._recent and now - self._recent[0] > RATE_WINDOW:
            self._recent.popleft()
        return self._recent

    def lower_ceiling(self, max_rate: float) -> None:
        """Another connection of the key says fewer requests per second: the smaller figure holds."""
        with self._lock:
            self.max_rate = max_rate
            self.rate = min(self.rate, max_rate)
            self._slow_start = False

    def paused_for(self, now: float) -> float:
        """Seconds the key stays paused after a 429 (``0``: it is not)."""
        with self._lock:
            return max(0.0, self.paused_until - now)


_BUDGETS: dict[tuple[str, str], KeyBudget] = {}
_BUDGETS_LOCK = threading.Lock()


def key_fingerprint(api_key: str) -> str:
    """A short, one-way name for ``api_key``, for logs: never the key, nor enough to guess it."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:8]


def budget_for(
    base_url: str,
    api_key: str,
    *,
    max_rate: float | None,
    service: Service,
    machine_directory: Callable[[], str | None] = lambda: None,
) -> KeyBudget:
    """This process's budget for ``api_key`` at ``base_url``'s host, made on first use.

    :param max_rate: the connection's ``max_requests_per_second`` (``None``: the service's default).
        Connections of one key that say different figures share the smallest.
    :param machine_directory: called once, when the budget is made: the folder where the machine's
        processes share the key's schedule (``None``: not shared).
    """
    from urllib.parse import urlsplit

    parts = urlsplit(base_url)
    # Host and port only: a Base URL's user:password@ never reaches the budget's name (or a log).
    host = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
    fingerprint = key_fingerprint(api_key)
    rate = max_rate if max_rate is not None else service.default_requests_per_second
    with _BUDGETS_LOCK:
        budget = _BUDGETS.get((host, fingerprint))
        if budget is None:
            directory = machine_directory()
            machine = None
            if directory:
                # A longer fingerprint of host and key: one file per key and host, named one-way.
                name = hashlib.sha256(f"{host}\0{api_key}".encode()).hexdigest()[:32]
                machine = MachineSchedule(directory, name)
            budget = _BUDGETS[(host, fingerprint)] = KeyBudget(
                label=f"key {fingerprint} at {host}",
                max_rate=rate,
                lockout_seconds=service.lockout_seconds,
                machine=machine,
            )
        elif rate is not None and (budget.max_rate is None or rate < budget.max_rate):
            budget.lower_ceiling(rate)
        return budget


def forget_budgets() -> None:
    """Drop every budget of this process (tests; a new process starts without any)."""
    with _BUDGETS_LOCK:
        _BUDGETS.clear()

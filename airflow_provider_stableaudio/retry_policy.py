"""When a failed call is tried again, and how long to wait first. No Airflow imports.

One policy for every path: the hook's synchronous calls and waits, the sensor's pokes and the
trigger's polls all ask it, so they cannot drift apart. Every wait it returns is bounded by the
time left before the caller's deadline.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

# Each gap between polls is 90-100% of the interval: polls stay spread out and never come later
# than asked.
POLL_JITTER = 0.1


def backoff_delay(
    attempt: int, *, base: float = 1.0, cap: float = 60.0, retry_after: float | None = None
) -> float:
    """Exponential backoff with full jitter for retry ``attempt`` (1-based), never below ``Retry-After``."""
    delay = random.uniform(0, min(cap, base * 2 ** (attempt - 1)))
    # A server that says when to come back is obeyed, even past the cap (the deadline still bounds it).
    return max(delay, retry_after) if retry_after is not None else delay


@dataclass(frozen=True)
class RetryPolicy:
    """How a transient failure (429, 5xx, a dropped connection) of one call is retried.

    :param max_retries: retries after the first attempt; ``None`` retries until the deadline.
    :param base: the upper bound of the first backoff, doubled after each failure in a row.
    :param cap: the largest backoff, unless the server's ``Retry-After`` asks for longer.
    """

    max_retries: int | None = 5
    base: float = 1.0
    cap: float = 60.0

    def delay(
        self, failures: int, *, retry_after: float | None = None, remaining: float | None = None
    ) -> float | None:
        """Seconds to wait before the next attempt after ``failures`` failures in a row; ``None``: give up.

        :param failures: failures in a row so far (1 after the first).
        :param retry_after: the server's ``Retry-After`` (or the service's lockout), in seconds.
        :param remaining: seconds left before the caller's deadline (``None``: no deadline). The
            wait never exceeds it, so the last attempt comes at the deadline at the latest; when
            the server's ``retry_after`` ends after the deadline, there is no last attempt (it
            could only be refused, and a refusal during a lockout may extend it).
        """
        if self.max_retries is not None and failures > self.max_retries:
            return None
        if remaining is not None and (remaining <= 0 or (retry_after or 0) > remaining):
            return None
        wait = backoff_delay(failures, base=self.base, cap=self.cap, retry_after=retry_after)
        return wait if remaining is None else min(wait, remaining)


def poll_delay(
    poll_interval: float, *, failures: int = 0, retry_after: float | None = None, remaining: float
) -> float | None:
    """Seconds until the next poll of a wait for a generation; ``None`` once the deadline passed.

    Between polls that answered: 90-100% of ``poll_interval``. After failures in a row: the longer
    of that and the backoff from ``poll_interval`` (``Retry-After`` honoured); a wait retries
    until its deadline, so no retry count applies. Never longer than ``remaining``, and ``None``
    when ``retry_after`` ends after the deadline (a poll before it could only be refused).
    """
    if remaining <= 0 or (retry_after or 0) > remaining:
        return None
    wait = poll_interval * random.uniform(1 - POLL_JITTER, 1)
    if failures:
        wait = max(wait, backoff_delay(failures, base=poll_interval, retry_after=retry_after))
    return min(wait, remaining)

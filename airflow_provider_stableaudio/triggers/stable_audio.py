"""The deferrable wait: polls a generation from the triggerer until it ends."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import time
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_stableaudio.events import (
    CONTENT_REFUSED,
    GENERATION_FAILED,
    error_event,
    refusal_event,
    success_event,
    timeout_event,
)
from airflow_provider_stableaudio.exceptions import (
    StableAudioConfigError,
    StableAudioContentRefusedError,
    StableAudioPermanentError,
    StableAudioResultGoneError,
    StableAudioRetryableError,
)
from airflow_provider_stableaudio.generation_result import CONTENT_FILTERED, GenerationState
from airflow_provider_stableaudio.poll_planner import (
    GroupKey,
    PollPlanner,
    blind_next_poll,
    group_key,
    planner,
)
from airflow_provider_stableaudio.retry_policy import poll_delay
from airflow_provider_stableaudio.services import AIMLAPI

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

# A poll waiting on the key's budget (paused by a 429) gives up this long after the deadline.
BUDGET_GRACE_SECONDS = 30.0
_hook_class: Any = None


async def _hook_class_off_the_loop() -> Any:
    """``hooks.factory.hook_class``, imported in a worker thread the first time: the triggerer
    imports this module on its event loop, and the hooks (``requests``' exceptions, the models, the
    request budget) would add some 35 ms there."""
    global _hook_class
    if _hook_class is None:
        factory = "airflow_provider_stableaudio.hooks.factory"
        _hook_class = (await asyncio.to_thread(importlib.import_module, factory)).hook_class
    return _hook_class


class StableAudioGenerationTrigger(BaseTrigger):
    """Wait for a Stable Audio generation to end, without holding a worker slot.

    Yields exactly one event: ``success`` (the audio file and credits), ``error`` (its ``reason``:
    the generation failed or its content was refused, the API refused the key or the poll, or the
    connection cannot be used) or ``timeout`` (still unfinished at ``end_time``). Transient poll failures
    (5xx, network, malformed bodies) are retried with backoff until ``end_time``; a 429 pauses every
    poll of the key in the triggerer until the service's lockout ends. Running it again (a
    triggerer restart) only polls again. A Stability AI result is never read here: the event says
    it is ready, and the worker fetches it.

    Polls go by need (:mod:`~airflow_provider_stableaudio.poll_planner`): not before generations of
    the same model and clip length have been seen to finish, then every ``poll_interval``; while the
    key's request budget holds polls back, the one due longest goes first.

    :param conn_id: the Stable Audio connection.
    :param generation_id: the generation to wait for.
    :param poll_interval: seconds between polls.
    :param end_time: the deadline as a Unix timestamp (wall clock: meaningful in any process).
    :param service: the service the connection reaches (``aimlapi`` or ``stability``).
    :param model: the model generating, if known: waits are scheduled from those of the same model.
    :param clip_seconds: the length of clip asked for, if known (likewise).
    :param submitted_at: when the generation was created, as a Unix timestamp, if known.
    """

    def __init__(
        self,
        *,
        conn_id: str,
        generation_id: str,
        poll_interval: float,
        end_time: float,
        service: str = AIMLAPI,
        model: str | None = None,
        clip_seconds: float | None = None,
        submitted_at: float | None = None,
    ) -> None:
        super().__init__()
        self.conn_id = conn_id
        self.generation_id = generation_id
        self.poll_interval = poll_interval
        self.end_time = end_time
        self.service = service
        self.model = model
        self.clip_seconds = clip_seconds
        self.submitted_at = submitted_at

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "conn_id": self.conn_id,
                "generation_id": self.generation_id,
                "poll_interval": self.poll_interval,
                "end_time": self.end_time,
                "service": self.service,
                "model": self.model,
                "clip_seconds": self.clip_seconds,
                "submitted_at": self.submitted_at,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        yield TriggerEvent(await self._wait())

    async def _wait(self) -> dict[str, Any]:
        """Poll until the generation ends or the deadline passes; return the one event payload."""
        from airflow_provider_stableaudio.hooks.async_session import shared_client_session

        hook = (await _hook_class_off_the_loop())(self.service)(conn_id=self.conn_id)
        # The connection is read now, as the triggerer starts each trigger in turn: not when held
        # waits are released together (Airflow 3.1's supervisor channel breaks under a burst of
        # concurrent reads: "Response read out of order").
        try:
            await hook.aget_settings()
        except StableAudioConfigError as error:
            return refusal_event(self.generation_id, error)
        plan = planner()
        group = group_key(self.service, self.model, self.clip_seconds)
        started = time.time()
        # Of unknown age (a sensor's wait on a generation made elsewhere), a wait is no scout and
        # its finish teaches the planner nothing.
        known_age = self.submitted_at is not None
        submitted_at = self.submitted_at if self.submitted_at is not None else started
        if known_age:
            plan.join(group, self.generation_id)
        # Hold the loop's shared session for the whole wait: keep-alive across polls.
        try:
            async with shared_client_session():
                return await self._poll_until_done(hook, plan, group, started, submitted_at)
        finally:
            if known_age:
                plan.leave(group, self.generation_id)

    async def _poll_until_done(
        self, hook: Any, plan: PollPlanner, group: GroupKey, started: float, submitted_at: float
    ) -> dict[str, Any]:
        last_status = "unknown"
        last_poll: float | None = None
        not_ready_at: float | None = None  # seconds after submission it was last seen unfinished
        failures = 0
        retry_after: float | None = None
        rate_limited = False  # the last failure was a 429: the key's budget holds the next poll
        while True:
            now = time.time()
            if failures:
                # Backoff after failures in a row; after a 429 the key's budget holds the poll
                # until the pause ends (with every other poll of the key), so no wait of its own.
                delay = poll_delay(
                    self.poll_interval,
                    failures=failures,
                    retry_after=retry_after,
                    remaining=self.end_time - now,
                )
                if delay is None:
                    return self._timeout(last_status, started)
                due: float | None = now + (0.0 if rate_limited else delay)
            elif self.submitted_at is None:
                # A generation of unknown age (a sensor's): it teaches the planner nothing and is
                # held for no scout; polled every interval.
                due = blind_next_poll(last_poll, self.poll_interval, now)
            else:
                due = plan.next_poll(
                    group,
                    self.generation_id,
                    submitted_at=submitted_at,
                    last_poll=last_poll,
                    poll_interval=self.poll_interval,
                    now=now,
                )
            if due is None:
                # Held until the group learns something (a wait finished), this wait becomes a
                # scout, or the deadline.
                # asyncio.timeout, not wait_for: a cancellation (a triggerer stopping) is never lost.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.0, self.end_time - now)):
                        await plan.held(group, self.generation_id).wait()
                if time.time() < self.end_time:
                    continue
                due = self.end_time
            due = min(due, self.end_time)  # the last poll comes at the deadline at the latest
            await asyncio.sleep(max(0.0, due - now))
            last_poll = time.time()
            try:
                # Bounded: a pause of the key's budget may outlast the deadline.
                async with asyncio.timeout(max(0.0, self.end_time - time.time()) + BUDGET_GRACE_SECONDS):
                    generation = await hook.aget_generation(self.generation_id, priority=due)
            except TimeoutError:
                return self._timeout(last_status, started)
            except (
                StableAudioPermanentError,
                StableAudioConfigError,
                StableAudioResultGoneError,
                StableAudioContentRefusedError,
            ) as error:
                return refusal_event(self.generation_id, error)
            except StableAudioRetryableError as error:
                failures += 1
                retry_after = error.retry_after
                rate_limited = error.status_code == 429
                self.log.warning(
                    "Polling generation %s failed (%d in a row), retrying: %s",
                    self.generation_id,
                    failures,
                    error,
                )
                continue
            failures = 0
            last_status = generation.status
            if generation.state is GenerationState.SUCCEEDED:
                if self.submitted_at is not None:
                    plan.finished(group, not_ready_at=not_ready_at, ready_at=time.time() - submitted_at)
                return success_event(generation, service=self.service)
            if generation.state is GenerationState.FAILED:
                refused = generation.status == CONTENT_FILTERED
                return error_event(
                    self.generation_id,
                    generation.error_message or f"status {generation.status!r}",
                    reason=CONTENT_REFUSED if refused else GENERATION_FAILED,
                )
            not_ready_at = time.time() - submitted_at
            if time.time() >= self.end_time:
                return self._timeout(last_status, started)

    def _timeout(self, last_status: str, started: float) -> dict[str, Any]:
        return timeout_event(
            self.generation_id,
            f"still {last_status!r} at the deadline, after waiting {time.time() - started:.0f}s "
            "in this trigger",
        )

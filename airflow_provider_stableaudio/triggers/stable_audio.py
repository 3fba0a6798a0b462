"""The deferrable wait: polls a generation from the triggerer until it ends."""

from __future__ import annotations

import asyncio
import random
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
from airflow_provider_stableaudio.hooks.factory import hook_class
from airflow_provider_stableaudio.retry_policy import poll_delay
from airflow_provider_stableaudio.services import AIMLAPI

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


class StableAudioGenerationTrigger(BaseTrigger):
    """Wait for a Stable Audio generation to end, without holding a worker slot.

    Yields exactly one event: ``success`` (the audio file and credits), ``error`` (its ``reason``:
    the generation failed or its content was refused, the API refused the key or the poll, or the
    connection cannot be used) or ``timeout`` (still unfinished at ``end_time``). Transient poll failures
    (429, 5xx, network, malformed bodies) are retried with backoff until ``end_time``. Running it
    again (a triggerer restart) only polls again. A Stability AI result is never read here: the
    event says it is ready, and the worker fetches it.

    :param conn_id: the Stable Audio connection.
    :param generation_id: the generation to wait for.
    :param poll_interval: seconds between polls.
    :param end_time: the deadline as a Unix timestamp (wall clock: meaningful in any process).
    :param service: the service the connection reaches (``aimlapi`` or ``stability``).
    """

    def __init__(
        self,
        *,
        conn_id: str,
        generation_id: str,
        poll_interval: float,
        end_time: float,
        service: str = AIMLAPI,
    ) -> None:
        super().__init__()
        self.conn_id = conn_id
        self.generation_id = generation_id
        self.poll_interval = poll_interval
        self.end_time = end_time
        self.service = service

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "conn_id": self.conn_id,
                "generation_id": self.generation_id,
                "poll_interval": self.poll_interval,
                "end_time": self.end_time,
                "service": self.service,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        yield TriggerEvent(await self._wait())

    async def _wait(self) -> dict[str, Any]:
        """Poll until the generation ends or the deadline passes; return the one event payload."""
        from airflow_provider_stableaudio.hooks.async_session import shared_client_session

        hook = hook_class(self.service)(conn_id=self.conn_id)
        started = time.time()
        last_status = "unknown"
        failures = 0
        # Hold the loop's shared session for the whole wait: keep-alive across polls.
        async with shared_client_session():
            # Triggers deferred together (or restarted together) start at random points of one
            # interval: a thousand first polls in one loop turn stall every other trigger.
            await asyncio.sleep(
                random.uniform(0, max(0.0, min(self.poll_interval, self.end_time - time.time())))
            )
            while True:
                retry_after = None
                try:
                    generation = await hook.aget_generation(self.generation_id)
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
                    self.log.warning(
                        "Polling generation %s failed (%d in a row), retrying: %s",
                        self.generation_id,
                        failures,
                        error,
                    )
                else:
                    failures = 0
                    last_status = generation.status
                    if generation.state is GenerationState.SUCCEEDED:
                        return success_event(generation, service=self.service)
                    if generation.state is GenerationState.FAILED:
                        refused = generation.status == CONTENT_FILTERED
                        return error_event(
                            self.generation_id,
                            generation.error_message or f"status {generation.status!r}",
                            reason=CONTENT_REFUSED if refused else GENERATION_FAILED,
                        )
                # The same policy as the synchronous wait: jittered interval, backoff after failures.
                delay = poll_delay(
                    self.poll_interval,
                    failures=failures,
                    retry_after=retry_after,
                    remaining=self.end_time - time.time(),
                )
                if delay is None:
                    return timeout_event(
                        self.generation_id,
                        f"still {last_status!r} at the deadline, after waiting {time.time() - started:.0f}s "
                        "in this trigger",
                    )
                await asyncio.sleep(delay)

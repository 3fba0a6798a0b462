"""How the operator and the sensor wait: checked durations, and the deferral to the trigger.

Shared by both so that neither imports the other.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow_provider_stableaudio.exceptions import StableAudioConfigError

if TYPE_CHECKING:
    from airflow_provider_stableaudio.hooks.stable_audio import StableAudioHook

# The task's own defer timeout leaves the trigger time to send its clearer ``timeout`` event first.
DEFER_TIMEOUT_MARGIN = timedelta(seconds=60)


def positive_seconds(name: str, value: Any) -> float:
    """``value`` (a number or timedelta) as seconds, or a :class:`StableAudioConfigError` naming ``name``."""
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:
        raise StableAudioConfigError(f"{name} must be a number of seconds greater than 0, got {value!r}")
    return float(seconds)


def defer_to_trigger(
    task: Any, *, hook: StableAudioHook, generation_id: str, poll_interval: float, timeout: float
) -> None:
    """Defer ``task`` until the generation ends (raises ``TaskDeferred``); resumes in ``execute_complete``.

    The task's own deferral timeout runs past the trigger's deadline plus its last poll and a margin,
    so the trigger's clearer ``timeout`` event arrives first.
    """
    from airflow_provider_stableaudio.triggers.stable_audio import StableAudioGenerationTrigger

    task.defer(
        trigger=StableAudioGenerationTrigger(
            conn_id=hook.conn_id,
            generation_id=generation_id,
            poll_interval=poll_interval,
            end_time=time.time() + timeout,
        ),
        method_name="execute_complete",
        timeout=timedelta(seconds=timeout + hook.settings.request_timeout) + DEFER_TIMEOUT_MARGIN,
    )

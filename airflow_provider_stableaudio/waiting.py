"""How the operator and the sensor wait: checked durations, and the deferral to the trigger.

Shared by both so that neither imports the other.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow_provider_stableaudio.exceptions import StableAudioConfigError, StableAudioTimeoutError

if TYPE_CHECKING:
    from airflow_provider_stableaudio.generation_request import GenerationRequest
    from airflow_provider_stableaudio.hooks.base import StableAudioBaseHook

# The task's own defer timeout leaves the trigger time to send its clearer ``timeout`` event first.
DEFER_TIMEOUT_MARGIN = timedelta(seconds=60)


def positive_seconds(name: str, value: Any) -> float:
    """``value`` (a number or timedelta) as seconds, or a :class:`StableAudioConfigError` naming ``name``."""
    seconds = value.total_seconds() if isinstance(value, timedelta) else value
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds > 0:
        raise StableAudioConfigError(f"{name} must be a number of seconds greater than 0, got {value!r}")
    return float(seconds)


def defer_to_trigger(
    task: Any,
    *,
    hook: StableAudioBaseHook,
    generation_id: str,
    poll_interval: float,
    timeout: float,
    request: GenerationRequest | None = None,
    submitted_at: float | None = None,
) -> None:
    """Defer ``task`` until the generation ends (raises ``TaskDeferred``); resumes in ``execute_complete``.

    The wait lasts ``timeout`` seconds, or the task's ``execution_timeout`` when that is shorter:
    Airflow does not apply ``execution_timeout`` to a deferred task, so the wait does, as the official
    providers' deferrals do. The task's own deferral timeout runs past the trigger's deadline plus its
    last poll and a margin, so the trigger's clearer ``timeout`` event arrives first.

    ``request`` (its model and clip length) and ``submitted_at`` (Unix time), when known, let the
    triggerer poll by need: not before generations like it were seen to finish.
    """
    from airflow_provider_stableaudio.triggers.stable_audio import StableAudioGenerationTrigger

    if execution_timeout_binds(task, timeout):
        timeout = task.execution_timeout.total_seconds()

    task.defer(
        trigger=StableAudioGenerationTrigger(
            conn_id=hook.conn_id,
            generation_id=generation_id,
            poll_interval=poll_interval,
            end_time=time.time() + timeout,
            service=hook.service_name,
            model=None if request is None else request.model,
            clip_seconds=None if request is None else request.duration_seconds,
            submitted_at=submitted_at,
        ),
        method_name="execute_complete",
        timeout=timedelta(seconds=timeout + hook.settings.request_timeout) + DEFER_TIMEOUT_MARGIN,
    )


def execution_timeout_binds(task: Any, timeout: float) -> bool:
    """Whether the task's ``execution_timeout`` ends a deferred wait before ``timeout`` does."""
    limit = getattr(task, "execution_timeout", None)
    return limit is not None and limit.total_seconds() < timeout


def ran_out_of_time(task: Any, error: StableAudioTimeoutError, timeout: float) -> BaseException:
    """The error that ends a deferred wait which ran out of time: ``AirflowTaskTimeout`` when it was
    the task's ``execution_timeout`` (retried as any execution timeout is), else ``error``."""
    if execution_timeout_binds(task, timeout):
        from airflow.providers.common.compat.sdk import AirflowTaskTimeout

        limit = task.execution_timeout.total_seconds()
        return AirflowTaskTimeout(
            f"{error} (execution_timeout {limit:g}s, shorter than timeout {timeout:g}s)"
        )
    return StableAudioTimeoutError(f"{error} (timeout {timeout:g}s)")


def default_deferrable() -> bool:
    """``[operators] default_deferrable`` where the deployment's environment sets it; True elsewhere.

    A minute-long render does not belong on a worker, so deferring is the default here; a deployment
    with no triggerer sets ``AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE=false`` (or its ``_CMD`` /
    ``_SECRET`` form) and every task waits on its worker. ``airflow.cfg`` cannot say it: Airflow
    writes every built-in default into a new one, ``default_deferrable = false`` among them, so a
    ``false`` there is most often nobody's choice, and reading it would take deferral from nearly
    every deployment.
    """
    import os

    from airflow.providers.common.compat.sdk import conf

    variable = "AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE"
    if not any(name in os.environ for name in (variable, f"{variable}_CMD", f"{variable}_SECRET")):
        return True
    return conf.getboolean("operators", "default_deferrable", fallback=True)

"""``execution_timeout`` bounds the deferred wait too (Airflow applies it only while a task runs)."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from airflow.providers.common.compat.sdk import AirflowSkipException, AirflowTaskTimeout, TaskDeferred

from airflow_provider_stableaudio.events import timeout_event
from airflow_provider_stableaudio.exceptions import StableAudioTimeoutError
from tests.operators.test_stable_audio_operator import context, operator
from tests.sensors.test_stable_audio_sensor import sensor, submit

REQUEST_TIMEOUT, MARGIN = 30, 60  # the connection's default; waiting.DEFER_TIMEOUT_MARGIN


def test_a_shorter_execution_timeout_ends_the_operators_deferred_wait(connection) -> None:
    with pytest.raises(TaskDeferred) as deferred:
        operator(timeout=900, execution_timeout=timedelta(seconds=120)).execute(context())
    assert deferred.value.trigger.end_time == pytest.approx(time.time() + 120, abs=5)
    assert deferred.value.timeout == timedelta(seconds=120 + REQUEST_TIMEOUT + MARGIN)


def test_a_longer_execution_timeout_leaves_timeout_in_charge(connection) -> None:
    with pytest.raises(TaskDeferred) as deferred:
        operator(timeout=300, execution_timeout=timedelta(hours=1)).execute(context())
    assert deferred.value.trigger.end_time == pytest.approx(time.time() + 300, abs=5)
    assert deferred.value.timeout == timedelta(seconds=300 + REQUEST_TIMEOUT + MARGIN)


def test_the_sensors_deferred_wait_ends_at_execution_timeout_too(connection) -> None:
    with pytest.raises(TaskDeferred) as deferred:
        sensor(submit(), timeout=900, execution_timeout=timedelta(seconds=45)).execute(context())
    assert deferred.value.trigger.end_time == pytest.approx(time.time() + 45, abs=5)
    assert deferred.value.timeout == timedelta(seconds=45 + REQUEST_TIMEOUT + MARGIN)


def test_running_out_of_execution_timeout_is_an_execution_timeout() -> None:
    event = timeout_event("g", "still 'generating'")
    with pytest.raises(
        AirflowTaskTimeout, match=r"still 'generating' \(execution_timeout 120s, shorter than timeout 900s\)"
    ):
        operator(timeout=900, execution_timeout=timedelta(seconds=120)).execute_complete(context(), event)
    with pytest.raises(StableAudioTimeoutError, match=r"\(timeout 300s\)"):
        operator(timeout=300, execution_timeout=timedelta(hours=1)).execute_complete(context(), event)
    with pytest.raises(AirflowTaskTimeout, match="execution_timeout 45s"):
        sensor("g", timeout=900, execution_timeout=timedelta(seconds=45)).execute_complete(context(), event)
    with pytest.raises(AirflowSkipException, match="soft_fail"):
        sensor("g", timeout=900, execution_timeout=timedelta(seconds=45), soft_fail=True).execute_complete(
            context(), event
        )

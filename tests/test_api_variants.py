"""The provider against every variant of the API the contract allows, through the real emulator.

Each variant is an emulator setting (see ``airflow_provider_stableaudio/emulator/variants.py``):
the hook, the trigger, the operator (deferred and on the worker) and the sensor must all come out
the same.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from pathlib import Path
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import PokeReturnValue, TaskDeferred

from airflow_provider_stableaudio.emulator import EmulatorServer
from airflow_provider_stableaudio.exceptions import StableAudioDownloadError, StableAudioGenerationFailed
from airflow_provider_stableaudio.generation_result import GenerationState
from tests.operators.test_reattach import MemoryStore, a_try
from tests.operators.test_stable_audio_operator import context, operator
from tests.sensors.test_stable_audio_sensor import sensor

EVERY_VARIANT = {
    "created_201": {"create_status": 201},
    "generation_id_field": {"id_field": "generation_id"},
    "waiting": {"pending_statuses": ["waiting"]},
    "active": {"pending_statuses": ["active"]},
    "processing": {"pending_statuses": ["processing"]},
    "waiting_then_active": {"pending_statuses": ["waiting", "active"]},
    "octet_stream": {"content_type": "application/octet-stream"},
    "expiring_urls": {"url_ttl_seconds": 3600},
    "complete": {"completed_status": "complete"},
    "fractional_credits": {"credits_per_step": 0.125},
    "all_at_once": {
        "create_status": 201,
        "id_field": "generation_id",
        "pending_statuses": ["waiting", "active"],
        "content_type": "application/octet-stream",
        "url_ttl_seconds": 3600,
        "completed_status": "complete",
        "credits_per_step": 0.125,
    },
}


@pytest.fixture(params=list(EVERY_VARIANT))
def variant(request: pytest.FixtureRequest, connection: EmulatorServer) -> dict[str, Any]:
    settings = EVERY_VARIANT[request.param]
    connection.set_variants(**settings)
    return settings


def sole_generation(emulator: EmulatorServer) -> dict[str, Any]:
    (generation,) = emulator.ledger()["generations"]
    return generation


def credits(emulator: EmulatorServer) -> int | float:
    """What the emulator reported the sole generation cost."""
    return sole_generation(emulator)["steps"] * emulator.variants.credits_per_step


def assert_clip(emulator: EmulatorServer, ctx: dict[str, Any], path: Path) -> None:
    """The task pushed the emulator's id, content type and credits and downloaded exactly its file."""
    generation = sole_generation(emulator)
    assert ctx["ti"].xcom("generation_id") == generation["id"]
    assert ctx["ti"].xcom("audio_file")["content_type"] == emulator.variants.content_type
    assert ctx["ti"].xcom("audio_file")["credits_used"] == credits(emulator)
    assert ctx["ti"].xcom("local_path") == str(path)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == generation["sha256"]


def test_the_deferred_operator_waits_out_every_pending_status_and_downloads(
    connection: EmulatorServer, variant: dict[str, Any], tmp_path: Path
) -> None:
    connection.set_generation_seconds(3600)
    ctx, target = context(), tmp_path / "clip.wav"
    op = operator(output_path=str(target))
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(ctx)
    trigger = deferred.value.trigger
    assert trigger.generation_id == sole_generation(connection)["id"]

    # Still pending: the hook and the trigger both read the variant's status as pending.
    pending = op.hook.get_generation(trigger.generation_id)
    assert (pending.state, pending.status) == (
        GenerationState.PENDING,
        connection.variants.pending_statuses[0],
    )
    trigger.end_time = 0  # a deadline in the past: one poll, then the timeout event
    (timed_out,) = [event.payload for event in asyncio.run(_events(trigger))]
    assert timed_out["status"] == "timeout"
    assert repr(connection.variants.pending_statuses[0]) in timed_out["message"]

    connection.set_generation_seconds(0)
    # A deadline, not forever: a status the provider misreads ends in a timeout event, not a hang.
    trigger.end_time = time.time() + 60
    (event,) = [event.payload for event in asyncio.run(_events(trigger))]
    assert event["status"] == "success"
    assert event["content_type"] == connection.variants.content_type
    assert event["credits_used"] == credits(connection)
    assert op.execute_complete(ctx, event) == event["url"]
    assert_clip(connection, ctx, target)


async def _events(trigger: Any) -> list[Any]:
    return [event async for event in trigger.run()]


def test_the_operator_on_the_worker_completes_and_downloads(
    connection: EmulatorServer, variant: dict[str, Any], tmp_path: Path
) -> None:
    ctx, target = context(), tmp_path / "clip.wav"
    url = operator(deferrable=False, output_path=str(target), timeout=60).execute(ctx)
    assert url == ctx["ti"].xcom("audio_file")["url"]
    assert_clip(connection, ctx, target)


def test_the_sensor_pokes_through_every_pending_status_and_downloads(
    connection: EmulatorServer, variant: dict[str, Any], tmp_path: Path
) -> None:
    connection.set_generation_seconds(3600)
    generation_id = operator(wait_for_completion=False).execute(context())
    ctx, target = context(), tmp_path / "clip.wav"
    waiting = sensor(generation_id, deferrable=False, output_path=str(target))
    assert waiting.poke(ctx) is False  # the variant's pending status is "not yet"
    connection.set_generation_seconds(0)
    done = waiting.poke(ctx)
    assert isinstance(done, PokeReturnValue)
    assert done.xcom_value == ctx["ti"].xcom("audio_file")["url"]
    assert ctx["ti"].xcom("audio_file")["content_type"] == connection.variants.content_type
    assert ctx["ti"].xcom("audio_file")["credits_used"] == credits(connection)
    assert hashlib.sha256(target.read_bytes()).hexdigest() == sole_generation(connection)["sha256"]


def test_failed_status_fails_the_task_on_the_worker_and_in_the_trigger(connection: EmulatorServer) -> None:
    connection.set_variants(failed_status="failed")
    with pytest.raises(StableAudioGenerationFailed, match="GenerationError"):
        operator(deferrable=False, prompt="[emulator:error] kazoo").execute(context())
    connection.reset()
    op = operator(prompt="[emulator:error] kazoo")
    with pytest.raises(TaskDeferred) as deferred:
        op.execute(context())
    (event,) = [event.payload for event in asyncio.run(_events(deferred.value.trigger))]
    assert event["status"] == "error"
    assert "GenerationError" in event["message"]


def test_an_expired_audio_url_fails_the_download_and_the_retry_fetches_a_fresh_one(
    connection: EmulatorServer, tmp_path: Path
) -> None:
    connection.set_variants(url_ttl_seconds=0)
    store, target = MemoryStore(), tmp_path / "clip.wav"
    with pytest.raises(StableAudioDownloadError, match=r"HTTP 403 \(the URL may have expired\)"):
        operator(deferrable=False, output_path=str(target)).execute(a_try(store))
    assert not target.exists()

    connection.set_variants(url_ttl_seconds=3600)
    retry = a_try(store)
    operator(deferrable=False, output_path=str(target)).execute(retry)
    assert_clip(connection, retry, target)  # the same, single generation: paid once

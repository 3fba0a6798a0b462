"""Stability AI's API on the real stack: Stable Audio 3 deferred to a real triggerer, 2.5 on a worker,
and the weekly remix of last week's clip (audio-to-audio), all from the example DAGs.

Runs before ``test_real_stack.py`` (file order), so its canary-key and component-log scenarios cover
these runs too.
"""

from __future__ import annotations

import hashlib
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from airflow_provider_stableaudio.emulator.audio import synthesize_wav
from tests.system.stack import Stack
from tests.system.test_real_stack import fresh_emulator, seconds_of, watch

pytestmark = pytest.mark.usefixtures("stack")


def sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def stability_ledger(stack: Stack) -> dict:
    return stack.emulator("GET", "ledger")["stability"]


def test_stable_audio_3_defers_to_a_triggerer_and_the_worker_stores_the_clip(stack: Stack, figures) -> None:
    fresh_emulator(stack, generation_seconds=10)
    started = time.monotonic()
    run_id = stack.trigger("example_stability_text_to_audio", {"seconds": 3})
    seen = watch(stack, "example_stability_text_to_audio", run_id)
    figures["run_seconds"] = round(time.monotonic() - started, 1)

    assert seen["state"] == "success"
    assert "deferred" in seen["states"]["generate_clip"]
    assert seen["triggerers"] <= set(stack.state["triggerer_jobs"].values())
    ledger = stability_ledger(stack)
    assert ledger["submits"] == {"stable-audio-3": {"text-to-audio": 1}}
    (generation,) = ledger["generations"]
    stored_at = stack.xcom("example_stability_text_to_audio", run_id, "generate_clip", "return_value")
    assert Path(stored_at).is_relative_to(stack.output)
    assert sha256(stored_at) == generation["sha256"]
    assert seconds_of(stored_at) == 3
    assert stack.xcom("example_stability_text_to_audio", run_id, "describe_clip", "return_value") == 3.0


def test_stable_audio_2_5_generates_on_the_worker_without_deferring(stack: Stack) -> None:
    fresh_emulator(stack, generation_seconds=10)
    run_id = stack.trigger("example_stability_sync")
    seen = watch(stack, "example_stability_sync", run_id)

    assert seen["state"] == "success"
    assert "deferred" not in seen["states"]["generate_sting"]
    (generation,) = stability_ledger(stack)["generations"]
    stored_at = stack.xcom("example_stability_sync", run_id, "generate_sting", "return_value")
    assert sha256(stored_at) == generation["sha256"]
    assert seconds_of(stored_at) == 4


def test_the_weekly_remix_varies_last_weeks_clip(stack: Stack) -> None:
    fresh_emulator(stack, generation_seconds=10)
    # A manual run is due now: last week's clip is the one named after today minus seven days.
    last_week = stack.output / "remix" / f"week_{datetime.now(UTC) - timedelta(days=7):%Y%m%d}.wav"
    last_week.parent.mkdir(parents=True, exist_ok=True)
    last_week.write_bytes(synthesize_wav("last week's loop", 8))

    run_id = stack.trigger("example_stability_remix")
    seen = watch(stack, "example_stability_remix", run_id)
    # Unpaused, the weekly DAG also runs for its latest week: let that run end before the next
    # scenario resets the emulator under it, then pause the DAG again (not before: the scheduler
    # queues no task of a paused DAG, so a run whose trigger fires after the pause never ends).
    for run in stack.api("GET", "/dags/example_stability_remix/dagRuns")["dag_runs"]:
        assert stack.wait_for_run("example_stability_remix", run["dag_run_id"]) == "success"
    stack.api("PATCH", "/dags/example_stability_remix", {"is_paused": True})

    assert seen["state"] == "success"
    assert "deferred" in seen["states"]["weekly_variation"]
    (remix,) = [g for g in stability_ledger(stack)["generations"] if g["mode"] == "audio-to-audio"]
    assert (remix["mode"], remix["derived_from_input"]) == ("audio-to-audio", True)
    assert remix["input_sha256"] == sha256(last_week)
    stored_at = stack.xcom("example_stability_remix", run_id, "weekly_variation", "return_value")
    assert sha256(stored_at) == remix["sha256"]

"""Chaos: every fault of the emulator switched on at 10-20%; every clip delivered once, paid once, whole.

Faults after which a submission's outcome is unknown (a dropped or timed-out POST, a 502/504 on
POST) make the provider fail the task on purpose rather than risk paying twice
(``tests/hooks/test_stable_audio_hook.py::test_submit_with_unknown_outcome_is_never_resent``), so the
POSTs here meet only faults that provably create nothing (429); polls and downloads meet all of them.
Failed generations are left out as well: a failed clip must be paid for again by design.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import Counter
from pathlib import Path

import airflow
import pytest

from airflow_provider_stableaudio.exceptions import StableAudioDownloadError
from airflow_provider_stableaudio.generation_request import GenerationRequest
from airflow_provider_stableaudio.hooks.stable_audio import StableAudioHook
from airflow_provider_stableaudio.triggers.stable_audio import StableAudioGenerationTrigger
from tests.conftest import API_KEY, set_connection
from tests.dags import load_dag

POLL_AND_DOWNLOAD_FAULTS = {
    # No 429 among the polls: a 429 pauses the whole key and halves its budget (it is a limit's answer,
    # tests/test_key_budget.py), so chance 429s would only slow every poll; the submits meet them.
    "rate_429": 0.0,
    "rate_5xx": 0.15,
    "rate_drop": 0.1,
    "rate_slow": 0.1,
    "rate_malformed": 0.1,
    "rate_download_404": 0.15,
    "rate_download_truncated": 0.15,
    "retry_after": 1,
    "slow_seconds": 2.0,  # longer than the connection's 0.5 s request timeout below
    "fault_methods": ["GET"],
}
CLIPS_THROUGH_TRIGGERS = 100
# Airflow >= 3.3 keeps a task's state across its retries, so a retry re-attaches to its generation.
DURABLE_TASK_STATE = tuple(int(part) for part in airflow.__version__.split(".")[:2]) >= (3, 3)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def report(emulator, label: str, requested: int, completed: int, capsys: pytest.CaptureFixture[str]) -> None:
    ledger = emulator.ledger()
    faults = {kind: count for kind, count in ledger["faults"].items() if count}
    with capsys.disabled():
        print(
            f"\nchaos [{label}]: requested={requested} created={len(ledger['generations'])} "
            f"completed={completed} requests={len(ledger['requests'])} faults={json.dumps(faults, sort_keys=True)}"
        )


def download_until_whole(hook: StableAudioHook, url: str, target: Path, size: int | None) -> int:
    """Download, retrying the download alone (never the generation) while the CDN misbehaves."""
    for attempt in range(1, 30):
        try:
            hook.download_audio(url, target, expected_size=size)
            return attempt
        except StableAudioDownloadError:
            assert not target.exists()
    raise AssertionError(f"{url} never downloaded whole")


@pytest.mark.asyncio
async def test_chaos_through_the_trigger(emulator, monkeypatch, tmp_path: Path, capsys) -> None:
    set_connection(monkeypatch, host=emulator.base_url, password=API_KEY, extra=json.dumps({"timeout": 0.5}))
    emulator.set_generation_seconds(2)
    emulator.set_faults(rate_429=0.02, retry_after=1, fault_methods=["POST"], seed=1)
    hook = StableAudioHook()
    requests = [
        GenerationRequest.build(prompt=f"chaos {n}", seconds_total=1, steps=10)
        for n in range(CLIPS_THROUGH_TRIGGERS)
    ]
    submitted = await asyncio.gather(*(asyncio.to_thread(hook.submit_generation, r) for r in requests))

    emulator.set_faults(**POLL_AND_DOWNLOAD_FAULTS, seed=2)
    triggers = [
        StableAudioGenerationTrigger(
            conn_id="stableaudio_default", generation_id=g.id, poll_interval=0.3, end_time=time.time() + 90
        )
        for g in submitted
    ]

    async def one_event(trigger: StableAudioGenerationTrigger) -> list[dict]:
        return [event.payload async for event in trigger.run()]

    results = await asyncio.gather(*(one_event(t) for t in triggers))
    assert all(len(events) == 1 for events in results)
    events = [events[0] for events in results]
    assert Counter(e["status"] for e in events) == {"success": CLIPS_THROUGH_TRIGGERS}, events

    await asyncio.gather(  # the downloads side by side, as the operators of 100 tasks would run them
        *(
            asyncio.to_thread(
                download_until_whole,
                hook,
                event["url"],
                tmp_path / f"{event['generation_id'].split(':')[0]}.wav",
                event["file_size"],
            )
            for event in events
        )
    )
    ledger = emulator.ledger()
    served = {g["id"]: g for g in ledger["generations"]}
    for event in events:
        target = tmp_path / f"{event['generation_id'].split(':')[0]}.wav"
        assert sha256(target) == served[event["generation_id"]]["sha256"]
    assert len(served) == CLIPS_THROUGH_TRIGGERS  # exactly one creation per requested clip
    assert sorted(g["prompt"] for g in served.values()) == sorted(r.params["prompt"] for r in requests)
    for kind in ("429", "500", "503", "drop", "slow", "malformed", "download_404", "download_truncated"):
        assert ledger["faults"][kind] > 0, f"fault {kind} was never applied"
    report(emulator, "100 triggers", CLIPS_THROUGH_TRIGGERS, len(events), capsys)


@pytest.mark.usefixtures("airflow_db")
def test_chaos_through_dag_test(emulator, monkeypatch, tmp_path: Path, capsys) -> None:
    set_connection(monkeypatch, host=emulator.base_url, password=API_KEY, extra=json.dumps({"timeout": 0.5}))
    emulator.set_generation_seconds(1)
    emulator.set_faults(**POLL_AND_DOWNLOAD_FAULTS, seed=3)
    run = load_dag("chaos.py", "chaos").test(run_conf={"output_dir": str(tmp_path)})
    assert run.state == "success"
    ledger = emulator.ledger()
    served = {g["prompt"]: g for g in ledger["generations"]}  # the last creation for each clip
    if DURABLE_TASK_STATE:
        assert len(ledger["generations"]) == len(served) == 10  # one creation per clip, retries included
    else:  # before Airflow 3.3 a task retry submits again (documented); each clip still arrives once
        assert len(served) == 10
    for n in range(10):
        clip = tmp_path / f"clip_{n}.wav"
        assert sha256(clip) == served[f"chaos clip number {n}"]["sha256"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"clip_{n}.wav" for n in range(10))
    report(emulator, "10 via dag.test", 10, 10, capsys)

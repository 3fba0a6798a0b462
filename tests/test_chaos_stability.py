"""Chaos on Stability AI's routes: faults at 10-20%; every clip delivered once, paid once, whole.

As in ``test_chaos.py``, the submits meet only the fault that provably creates nothing (429): after
a dropped, timed-out, 504 or malformed submit the outcome is unknown and the provider fails on
purpose rather than pay twice (``tests/hooks/test_stability_generate_to.py``). Polls and result
fetches meet every fault the result route has (drop, 429, 5xx, slow, a body cut short).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import Counter
from pathlib import Path

import pytest

from airflow_provider_stableaudio.emulator.audio import synthesize_wav
from airflow_provider_stableaudio.events import generation_from_event
from airflow_provider_stableaudio.exceptions import StableAudioDownloadError
from airflow_provider_stableaudio.generation_request import GenerationRequest
from airflow_provider_stableaudio.hooks.stability import StabilityAudioHook
from airflow_provider_stableaudio.triggers.stable_audio import StableAudioGenerationTrigger
from tests.conftest import API_KEY, set_connection
from tests.dags import load_dag
from tests.test_chaos import DURABLE_TASK_STATE

RESULT_FAULTS = {
    # No 429 among the polls: a 429 pauses the whole key and halves its budget (it is a limit's answer,
    # tests/test_key_budget.py), so chance 429s would only slow every poll; the submits meet them.
    "rate_429": 0.0,
    "rate_5xx": 0.1,
    "rate_drop": 0.1,
    "rate_slow": 0.1,
    "rate_download_truncated": 0.15,
    "retry_after": 1,
    "slow_seconds": 2.0,  # longer than the connection's 0.5 s request timeout below
    "fault_methods": ["GET"],
}
TEXT_CLIPS = 24
REMIX_CLIPS = 6  # audio-to-audio, from a real WAV
DAG_CLIPS = 6  # tests/dags/chaos_stability.py's mapped clips


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stability_connection(monkeypatch: pytest.MonkeyPatch, emulator) -> None:
    set_connection(
        monkeypatch,
        "stability_default",
        conn_type="stability",
        host=emulator.base_url,
        password=API_KEY,
        extra=json.dumps({"timeout": 0.5}),
    )


def report(emulator, label: str, requested: int, completed: int, capsys: pytest.CaptureFixture[str]) -> None:
    ledger = emulator.ledger()
    stability = ledger["stability"]
    faults = {kind: count for kind, count in ledger["faults"].items() if count}
    with capsys.disabled():
        print(
            f"\nchaos [{label}]: requested={requested} created={stability['submit_count']} "
            f"completed={completed} submits={json.dumps(stability['submits'], sort_keys=True)} "
            f"results_served={stability['results_served']} requests={len(ledger['requests'])} "
            f"faults={json.dumps(faults, sort_keys=True)}"
        )


def store_until_whole(hook: StabilityAudioHook, event: dict, target: Path) -> int:
    """Store the result, retrying the fetch alone (never the generation) while the API misbehaves."""
    for attempt in range(1, 30):
        try:
            hook.store_result(generation_from_event(event), target)
            return attempt
        except StableAudioDownloadError:
            assert not target.exists()  # nothing half-written is ever left
    raise AssertionError(f"the result of {event['generation_id']} never arrived whole")


@pytest.mark.asyncio
async def test_stability_chaos_through_the_trigger(emulator, monkeypatch, tmp_path: Path, capsys) -> None:
    stability_connection(monkeypatch, emulator)
    emulator.set_generation_seconds(2)
    emulator.set_faults(rate_429=0.05, retry_after=1, fault_methods=["POST"], seed=11)
    source = tmp_path / "source.wav"
    source.write_bytes(synthesize_wav("last week's clip", 6))
    requests = [
        GenerationRequest.build("stable-audio-3", prompt=f"chaos {n}", duration=2, output_format="wav")
        for n in range(TEXT_CLIPS)
    ] + [
        GenerationRequest.build(
            "stable-audio-3", prompt=f"remix {n}", duration=3, output_format="wav", init_audio=source
        )
        for n in range(REMIX_CLIPS)
    ]
    hook = StabilityAudioHook()
    submitted = await asyncio.gather(*(asyncio.to_thread(hook.submit_generation, r) for r in requests))
    assert emulator.ledger()["faults"]["429"] > 0

    emulator.set_faults(**RESULT_FAULTS, seed=12)
    triggers = [
        StableAudioGenerationTrigger(
            conn_id="stability_default",
            generation_id=g.id,
            poll_interval=0.3,
            end_time=time.time() + 90,
            service="stability",
        )
        for g in submitted
    ]

    async def one_event(trigger: StableAudioGenerationTrigger) -> list[dict]:
        return [event.payload async for event in trigger.run()]

    results = await asyncio.gather(*(one_event(t) for t in triggers))
    assert all(len(events) == 1 for events in results)
    events = [events[0] for events in results]
    assert Counter(e["status"] for e in events) == {"success": len(requests)}, events

    targets = {e["generation_id"]: tmp_path / "out" / f"{e['generation_id']}.wav" for e in events}
    await asyncio.gather(
        *(asyncio.to_thread(store_until_whole, hook, e, targets[e["generation_id"]]) for e in events)
    )

    ledger = emulator.ledger()
    stability = ledger["stability"]
    generations = {g["id"]: g for g in stability["generations"]}
    for generation_id, target in targets.items():
        assert sha256(target) == generations[generation_id]["sha256"]
        assert target.stat().st_size == generations[generation_id]["file_size"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(f"{i}.wav" for i in targets)
    # Exactly one submit per clip, and each clip the one asked for.
    assert stability["submits"] == {
        "stable-audio-3": {"text-to-audio": TEXT_CLIPS, "audio-to-audio": REMIX_CLIPS}
    }
    assert sorted(g["prompt"] for g in generations.values()) == sorted(r.params["prompt"] for r in requests)
    remixes = [g for g in generations.values() if g["mode"] == "audio-to-audio"]
    assert all(g["derived_from_input"] and g["input_sha256"] == sha256(source) for g in remixes)
    for kind in ("429", "drop", "slow", "download_truncated"):
        assert ledger["faults"].get(kind, 0) > 0, f"fault {kind} was never applied"
    assert sum(ledger["faults"].get(s, 0) for s in ("500", "502", "503", "504")) > 0
    report(emulator, f"{len(requests)} Stability triggers", len(requests), len(events), capsys)


@pytest.mark.usefixtures("airflow_db")
def test_stability_chaos_through_dag_test(emulator, monkeypatch, tmp_path: Path, capsys) -> None:
    stability_connection(monkeypatch, emulator)
    emulator.set_generation_seconds(1)
    emulator.set_faults(**RESULT_FAULTS, seed=13)
    run = load_dag("chaos_stability.py", "chaos_stability").test(run_conf={"output_dir": str(tmp_path)})
    assert run.state == "success"
    stability = emulator.ledger()["stability"]
    served = {g["prompt"]: g for g in stability["generations"]}  # the last creation for each clip
    if DURABLE_TASK_STATE:  # a retry re-attaches to its generation: one submit per clip
        assert stability["submits"] == {"stable-audio-3": {"text-to-audio": DAG_CLIPS}}
    assert len(served) == DAG_CLIPS
    for n in range(DAG_CLIPS):
        assert sha256(tmp_path / f"clip_{n}.wav") == served[f"stability chaos clip {n}"]["sha256"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"clip_{n}.wav" for n in range(DAG_CLIPS))
    report(emulator, f"{DAG_CLIPS} Stability clips via dag.test", DAG_CLIPS, DAG_CLIPS, capsys)


def test_stability_chaos_synchronous(emulator, monkeypatch, tmp_path: Path, capsys) -> None:
    """Stable Audio 2.5: the answer is the clip, so only 429 (nothing created) may meet its POSTs."""
    stability_connection(monkeypatch, emulator)
    emulator.set_generation_seconds(0.3)
    emulator.set_faults(rate_429=0.2, retry_after=1, fault_methods=["POST"], seed=14)
    hook = StabilityAudioHook()
    clips = 12
    requests = [
        GenerationRequest.build("stable-audio-2.5", prompt=f"sync chaos {n}", duration=2, output_format="wav")
        for n in range(clips)
    ]

    async def generate_all() -> list:
        return await asyncio.gather(
            *(
                asyncio.to_thread(hook.generate_to, r, tmp_path / f"sync_{n}.wav", timeout=30)
                for n, r in enumerate(requests)
            )
        )

    asyncio.run(generate_all())
    ledger = emulator.ledger()
    generations = {g["prompt"]: g for g in ledger["stability"]["generations"]}
    assert ledger["stability"]["submits"] == {"stable-audio-2.5": {"text-to-audio": clips}}
    for n in range(clips):
        assert sha256(tmp_path / f"sync_{n}.wav") == generations[f"sync chaos {n}"]["sha256"]
    assert ledger["faults"]["429"] > 0
    report(emulator, f"{clips} Stable Audio 2.5 calls", clips, clips, capsys)

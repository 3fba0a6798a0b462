"""OpenLineage: the clip at ``output_path`` as the output dataset, the provider's run facet, and no
change at all without the OpenLineage provider."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from airflow.providers.common.compat.version_compat import AIRFLOW_V_3_2_PLUS

from airflow_provider_stableaudio.lineage import dataset_name
from airflow_provider_stableaudio.sensors.stable_audio import StableAudioGenerationSensor
from tests.conftest import ROOT
from tests.decorators.test_stable_audio_decorator import decorated
from tests.operators.test_stable_audio_operator import RecordingTI, operator

FACET = "stableAudioGeneration"
# 252 credits per diffusion step in the emulator (credits_per_step), 100 steps by default.
CREDITS = 25200


@pytest.mark.parametrize(
    ("location", "namespace", "name"),
    [("/data/clips/rain.wav", "file", "/data/clips/rain.wav"),
     ("file:///data/clips/rain.wav", "file", "/data/clips/rain.wav"),
     ("clips/rain.wav", "file", os.path.abspath("clips/rain.wav")),
     ("s3://sounds/clips/rain.wav", "s3://sounds", "clips/rain.wav"),
     ("s3a://sounds/clips/rain.wav", "s3://sounds", "clips/rain.wav"),
     ("s3://aws_default@sounds/clips/rain.wav", "s3://sounds", "clips/rain.wav"),  # an ObjectStoragePath's conn id
     ("gs://sounds/rain.wav", "gs://sounds", "rain.wav"),
     ("gcs://sounds/rain.wav", "gs://sounds", "rain.wav"),
     ("abfss://clips@account.dfs.core.windows.net/a/rain.wav", "abfss://clips@account.dfs.core.windows.net", "a/rain.wav"),
     ("hdfs://namenode:8020/clips/rain.wav", "hdfs://namenode:8020", "clips/rain.wav"),
     ("memory://clips/rain.wav", "memory://clips", "rain.wav")],
)  # fmt: skip
def test_datasets_are_named_by_the_openlineage_naming_spec(location: str, namespace: str, name: str) -> None:
    assert dataset_name(location) == (namespace, name)


def facets_of(task: Any) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    """The output datasets and the provider's run facet of ``task``'s lineage, as plain data."""
    lineage = task.get_openlineage_facets_on_complete(None)
    facet = lineage.run_facets[FACET]
    fields = {k: getattr(facet, k) for k in ("generation_id", "credits_used", "model", "parameters")}
    return [(d.namespace, d.name) for d in lineage.outputs], fields


def test_the_operator_reports_the_clip_and_the_generation(connection, tmp_path: Path) -> None:
    connection.set_generation_seconds(0)
    op = operator(deferrable=False, output_path=str(tmp_path / "clip.wav"))
    assert op.get_openlineage_facets_on_complete(None) is None  # nothing delivered yet
    op.execute({"ti": RecordingTI()})
    (generation,) = connection.ledger()["generations"]
    outputs, facet = facets_of(op)
    assert outputs == [("file", str(tmp_path / "clip.wav"))]
    assert facet == {
        "generation_id": generation["id"],
        "credits_used": CREDITS,
        "model": "stable-audio",
        "parameters": {"prompt": "a cheerful ukulele riff", "seconds_total": 2, "steps": 100},
    }


def test_a_remix_reports_the_clip_it_was_made_from_as_its_input(stability, tmp_path: Path) -> None:
    from airflow_provider_stableaudio.emulator.audio import synthesize_wav
    from airflow_provider_stableaudio.operators.stable_audio import StableAudioGenerateOperator

    source = tmp_path / "last_week.wav"
    source.write_bytes(synthesize_wav("last week", 8))
    op = StableAudioGenerateOperator(
        task_id="remix",
        conn_id="stability_default",
        model="stable-audio-2.5",
        prompt="a variation",
        duration=8,
        seed=5,
        output_format="wav",
        init_audio=str(source),
        strength=0.5,
        output_path=str(tmp_path / "remix.wav"),
    )
    op.execute({"ti": RecordingTI()})
    lineage = op.get_openlineage_facets_on_complete(None)
    assert [(d.namespace, d.name) for d in lineage.inputs] == [("file", str(source))]
    assert [(d.namespace, d.name) for d in lineage.outputs] == [("file", str(tmp_path / "remix.wav"))]
    facet = lineage.run_facets[FACET]
    assert (facet.generation_id, facet.model) == (None, "stable-audio-2.5")
    assert facet.parameters["strength"] == 0.5
    assert (facet.audio_file["seed"], facet.audio_file["finish_reason"]) == (5, "SUCCESS")


def test_without_output_path_there_is_no_output_dataset_but_the_facet(connection) -> None:
    connection.set_generation_seconds(0)
    op = operator(deferrable=False)
    op.execute({"ti": RecordingTI()})
    outputs, facet = facets_of(op)
    assert outputs == []
    assert facet["credits_used"] == CREDITS


def test_the_facet_keeps_fractional_credits(connection) -> None:
    from openlineage.client.serde import Serde

    connection.set_generation_seconds(0)
    connection.set_variants(credits_per_step=0.125)  # 12.5 credits at 100 steps
    op = operator(deferrable=False)
    op.execute({"ti": RecordingTI()})
    facet = op.get_openlineage_facets_on_complete(None).run_facets[FACET]
    assert facet.credits_used == 12.5
    assert json.loads(Serde.to_json(facet))["credits_used"] == 12.5  # as the event carries it


def test_the_sensor_reports_the_clip_without_the_request_it_did_not_send(connection, tmp_path: Path) -> None:
    connection.set_generation_seconds(0)
    generation_id = operator(wait_for_completion=False).execute({"ti": RecordingTI()})
    sensor = StableAudioGenerationSensor(
        task_id="wait",
        generation_id=generation_id,
        output_path=str(tmp_path / "waited.wav"),
        deferrable=False,
    )
    assert sensor.poke({"ti": RecordingTI()}).is_done
    outputs, facet = facets_of(sensor)
    assert outputs == [("file", str(tmp_path / "waited.wav"))]
    assert facet == {
        "generation_id": generation_id,
        "credits_used": CREDITS,
        "model": None,
        "parameters": None,
    }


def test_the_decorator_reports_the_request_its_function_returned(connection, tmp_path: Path) -> None:
    connection.set_generation_seconds(0)
    task = decorated(
        {"prompt": "a foghorn", "steps": 10}, deferrable=False, output_path=str(tmp_path / "f.wav")
    )
    task.execute({"ti": RecordingTI()})
    outputs, facet = facets_of(task)
    assert outputs == [("file", str(tmp_path / "f.wav"))]
    assert facet["parameters"] == {"prompt": "a foghorn", "seconds_total": 30, "steps": 10}
    assert facet["credits_used"] == 252 * 10


def test_without_the_openlineage_provider_nothing_changes(
    connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As if neither the provider nor its client were installed: importing them raises ImportError.
    for module in [m for m in sys.modules if "openlineage" in m]:
        monkeypatch.delitem(sys.modules, module)
    for module in ("airflow.providers.openlineage", "openlineage"):
        monkeypatch.setitem(sys.modules, module, None)
    connection.set_generation_seconds(0)
    ti = RecordingTI()
    op = operator(deferrable=False, output_path=str(tmp_path / "clip.wav"))
    url = op.execute({"ti": ti})
    assert op.get_openlineage_facets_on_complete(None) is None
    assert [key for key, _ in ti.pushed] == ["generation_id", "audio_file", "local_path"]
    assert url == ti.xcom("audio_file")["url"]


@pytest.mark.skipif(
    not AIRFLOW_V_3_2_PLUS,
    reason="on Airflow 3.1.2 the OpenLineage provider (2.20.3) emits the COMPLETE event of a resumed "
    "deferred task without its operator's facets (seen in make test-compat, cause not found yet); the "
    "operator's own facets are checked below on every version",
)
@pytest.mark.usefixtures("airflow_db")
def test_a_dag_run_emits_the_clip_and_the_facet_to_an_openlineage_transport(
    connection, tmp_path: Path
) -> None:
    """``example_stable_audio`` in ``dag.test()`` with the OpenLineage provider enabled by a file
    transport, in a process of its own (the provider reads its configuration once per process)."""
    events = tmp_path / "openlineage.jsonl"
    env = {
        **os.environ,
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(
            {"type": "file", "log_file_path": str(events), "append": True}
        ),
        "AIRFLOW__OPENLINEAGE__NAMESPACE": "stableaudio-tests",
        # Emit from a thread of the task's process, not a fork of it.
        "AIRFLOW__OPENLINEAGE__EXECUTE_IN_THREAD": "True",
    }
    run_dag = (
        "import json, sys\n"
        "from tests.dags import load_dag\n"
        "run = load_dag('example_stable_audio.py', 'example_stable_audio').test(run_conf=json.loads(sys.argv[1]))\n"
        "print(f'run state: {run.state}')\n"
    )
    conf = {"seconds": 2, "output_dir": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", run_dag, json.dumps(conf)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert "run state: success" in out.stdout.splitlines(), out.stdout[-3000:] + out.stderr[-3000:]

    emitted = [json.loads(line) for line in events.read_text().splitlines()]
    (complete,) = [
        e for e in emitted if e["eventType"] == "COMPLETE" and e["job"]["name"].endswith(".generate_clip")
    ]
    (generation,) = connection.ledger()["generations"]
    (output,) = complete["outputs"]
    clip = next((tmp_path / "example_stable_audio").iterdir())
    assert (output["namespace"], output["name"]) == ("file", str(clip))
    facet = complete["run"]["facets"][FACET]
    assert facet["generation_id"] == generation["id"]
    assert facet["credits_used"] == CREDITS
    assert facet["model"] == "stable-audio"
    assert facet["parameters"] == {
        "prompt": "A calm lo-fi beat with warm piano chords",
        "seconds_total": 2,
        "steps": 100,
    }
    assert facet["_producer"].startswith("https://github.com/apache/airflow")


def test_the_documented_settings_keep_the_providers_facet_out_of_lineage(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """docs/lineage.md's two ways to keep the audio URL out of lineage, as OpenLineage reads them."""
    import re

    from airflow.providers.openlineage import conf as ol_conf
    from airflow.providers.openlineage.utils.emission_policy import resolve_task_emission_policy
    from airflow.providers.openlineage.utils.utils import is_operator_disabled
    from airflow.providers.standard.operators.empty import EmptyOperator

    page = (ROOT / "docs" / "lineage.md").read_text(encoding="utf-8")
    documented = dict(re.findall(r"^export (AIRFLOW__OPENLINEAGE__\w+)='(.*)'$", page, re.MULTILINE))
    tasks = [operator(), StableAudioGenerationSensor(task_id="wait", generation_id="g"), decorated("x")]

    def read_afresh() -> None:  # OpenLineage caches its options, except under pytest
        for option in (ol_conf.emission_policy, ol_conf.disabled_operators):
            getattr(option, "cache_clear", lambda: None)()

    monkeypatch.setenv(
        "AIRFLOW__OPENLINEAGE__EMISSION_POLICY", documented["AIRFLOW__OPENLINEAGE__EMISSION_POLICY"]
    )
    read_afresh()
    try:
        for task in tasks:
            assert resolve_task_emission_policy(task, "d", task.task_id).extract_operator_metadata is False
        other = EmptyOperator(task_id="other")
        assert resolve_task_emission_policy(other, "d", "other").extract_operator_metadata is True
        monkeypatch.delenv("AIRFLOW__OPENLINEAGE__EMISSION_POLICY")
        monkeypatch.setenv(
            "AIRFLOW__OPENLINEAGE__DISABLED_FOR_OPERATORS",
            documented["AIRFLOW__OPENLINEAGE__DISABLED_FOR_OPERATORS"],
        )
        read_afresh()
        assert [is_operator_disabled(task) for task in tasks] == [True, True, True]
    finally:
        monkeypatch.undo()
        read_afresh()

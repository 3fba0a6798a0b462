"""A batch of clips from a list of prompts, one mapped task each (dynamic task mapping)."""

from __future__ import annotations

import os
import tempfile

import pendulum
from airflow.sdk import DAG, task

from airflow_provider_stableaudio.operators.stable_audio import StableAudioGenerateOperator

OUTPUT_DIR = os.environ.get("STABLEAUDIO_OUTPUT_DIR", os.path.join(tempfile.gettempdir(), "stable-audio"))
# One folder per run, one file per mapped task.
CLIP_PATH = "{{ params.output_dir }}/batch/{{ dag_run.run_after | ts_nodash }}/clip_{{ ti.map_index }}.wav"
PROMPTS = [
    "Rain on a tin roof with distant thunder",
    "A cheerful marimba loop",
    "Deep ambient drone for meditation",
]

with DAG(
    dag_id="example_stable_audio_batch",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "stable-audio"],
    params={"output_dir": OUTPUT_DIR},
):
    clips = StableAudioGenerateOperator.partial(
        task_id="generate",
        seconds_total=4,
        poll_interval=2,
        output_path=CLIP_PATH,
    ).expand(prompt=PROMPTS)

    @task
    def playlist(urls: list[str]) -> list[str]:
        """Collect the audio URLs of the whole batch, in prompt order."""
        for prompt, url in zip(PROMPTS, urls, strict=True):
            print(f"{prompt}: {url}")
        return list(urls)

    playlist(clips.output)

"""A batch of clips from a list of prompts, one mapped task each (dynamic task mapping), and what it cost."""

from __future__ import annotations

import os
import tempfile

import pendulum
from airflow.sdk import DAG, XComArg, task

from airflow_provider_stableaudio.operators.stable_audio import StableAudioGenerateOperator

OUTPUT_DIR = os.environ.get("STABLEAUDIO_OUTPUT_DIR", os.path.join(tempfile.gettempdir(), "stable-audio"))
# One folder per run, one file per mapped task.
CLIP_PATH = "{{ params.output_dir }}/batch/{{ dag_run.run_after | ts_nodash }}/clip_{{ ti.map_index }}.wav"
# [START howto_pool]
# A pool caps how many generations run at once, so a large batch stays under the API's rate limit
# (`airflow pools set stable_audio 8 "Stable Audio generations"`, then STABLEAUDIO_POOL=stable_audio).
POOL = os.environ.get("STABLEAUDIO_POOL", "default_pool")
# [END howto_pool]
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
    # [START howto_batch_pool]
    clips = StableAudioGenerateOperator.partial(
        task_id="generate",
        seconds_total=4,
        poll_interval=2,
        output_path=CLIP_PATH,
        pool=POOL,
    ).expand(prompt=PROMPTS)
    # [END howto_batch_pool]

    @task
    def playlist(urls: list[str]) -> list[str]:
        """Collect the audio URLs of the whole batch, in prompt order."""
        # All at once: iterating asks for one past the end, and Airflow logs an error
        # (apache/airflow#73175).
        urls = urls[:]
        for prompt, url in zip(PROMPTS, urls, strict=True):
            print(f"{prompt}: {url}")
        return list(urls)

    playlist(clips.output)

    # [START howto_batch_cost]
    @task
    def report_cost(audio_files: list[dict]) -> dict:
        """The run's clips and their total cost, from the ``audio_file`` XCom of every mapped task."""
        # All at once: iterating asks for one past the end, and Airflow logs an error
        # (apache/airflow#73175).
        audio_files = audio_files[:]
        for audio_file in audio_files:
            print(f"{audio_file['file_name']}: {audio_file['credits_used']} credits")
        # A clip the API reported no cost for counts 0 and is named apart.
        unknown = [a["generation_id"] for a in audio_files if a["credits_used"] is None]
        total = sum(a["credits_used"] or 0 for a in audio_files)
        print(f"{len(audio_files)} clips, {total} credits in all; cost unknown for {unknown or 'none'}")
        return {"clips": len(audio_files), "credits_used": total, "cost_unknown": unknown}

    report_cost(XComArg(clips, key="audio_file"))
    # [END howto_batch_cost]

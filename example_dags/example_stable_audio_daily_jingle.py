"""A jingle a day: the prompt is templated from the run's date and the DAG's params.

Each clip is saved under a dated path and announced as an asset event, with the prompt, model,
duration, generation id, URL, size and credits in the event's extra: the
``example_stable_audio_asset_consumer`` DAG is scheduled on it.
"""

from __future__ import annotations

import os
import tempfile

import pendulum
from airflow.sdk import DAG, Asset, Param

from airflow_provider_stableaudio.operators.stable_audio import StableAudioGenerateOperator

OUTPUT_DIR = os.environ.get("STABLEAUDIO_OUTPUT_DIR", os.path.join(tempfile.gettempdir(), "stable-audio"))
# [START howto_asset]
DAILY_JINGLE = Asset("stable_audio_daily_jingle")
# [END howto_asset]

with DAG(
    dag_id="example_stable_audio_daily_jingle",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "stable-audio"],
    params={
        "mood": Param("upbeat", type="string", enum=["upbeat", "mellow", "epic"]),
        "instrument": Param("ukulele", type="string", minLength=1),
        "output_dir": Param(OUTPUT_DIR, type="string"),
    },
):
    # [START howto_operator_asset_event]
    StableAudioGenerateOperator(
        task_id="generate_jingle",
        prompt=(
            "A short {{ params.mood }} {{ params.instrument }} jingle for "
            "{{ dag_run.run_after.strftime('%A, %B %-d') }}"
        ),
        seconds_total=5,
        output_path="{{ params.output_dir }}/jingles/{{ dag_run.run_after | ds }}.wav",
        outlets=[DAILY_JINGLE],
        poll_interval=2,
    )
    # [END howto_operator_asset_event]

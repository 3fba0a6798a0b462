"""Submit now, wait elsewhere: the operator returns at once and the sensor waits (deferred) for the clip."""

from __future__ import annotations

import os
import tempfile

import pendulum
from airflow.sdk import DAG

from airflow_provider_stableaudio.operators.stable_audio import StableAudioGenerateOperator

# [START import_sensor]
from airflow_provider_stableaudio.sensors.stable_audio import StableAudioGenerationSensor

# [END import_sensor]

OUTPUT_DIR = os.environ.get("STABLEAUDIO_OUTPUT_DIR", os.path.join(tempfile.gettempdir(), "stable-audio"))

with DAG(
    dag_id="example_stable_audio_sensor",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "stable-audio"],
    params={"output_dir": OUTPUT_DIR},
):
    # [START howto_sensor_stable_audio]
    submit = StableAudioGenerateOperator(
        task_id="submit",
        prompt="Waves rolling onto a pebble beach",
        seconds_total=6,
        wait_for_completion=False,
    )
    wait = StableAudioGenerationSensor(
        task_id="wait_for_clip",
        generation_id="{{ ti.xcom_pull(task_ids='submit', key='generation_id') }}",
        output_path="{{ params.output_dir }}/waves_{{ dag_run.run_after | ts_nodash }}.wav",
        poke_interval=2,
    )
    submit >> wait
    # [END howto_sensor_stable_audio]

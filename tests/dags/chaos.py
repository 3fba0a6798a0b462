"""Ten clips through dynamic task mapping, with retries: the DAG half of the chaos test."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG

from airflow_provider_stableaudio.operators.stable_audio import StableAudioGenerateOperator

with DAG(
    "chaos",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    params={"output_dir": "/tmp/stableaudio-chaos"},
):
    StableAudioGenerateOperator.partial(
        task_id="generate",
        seconds_total=1,
        steps=10,
        poll_interval=0.2,
        timeout=120,
        retries=8,
        retry_delay=timedelta(0),
        output_path="{{ params.output_dir }}/clip_{{ ti.map_index }}.wav",
    ).expand(prompt=[f"chaos clip number {n}" for n in range(10)])

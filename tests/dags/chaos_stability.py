"""Six Stable Audio 3 clips on Stability AI through dynamic task mapping, with retries: chaos's DAG half."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG

from airflow_provider_stableaudio.operators.stable_audio import StableAudioGenerateOperator

with DAG(
    "chaos_stability",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    params={"output_dir": "/tmp/stableaudio-chaos-stability"},
):
    StableAudioGenerateOperator.partial(
        task_id="generate",
        conn_id="stability_default",
        model="stable-audio-3",
        duration=2,
        output_format="wav",
        poll_interval=0.2,
        timeout=120,
        retries=8,
        retry_delay=timedelta(0),
        output_path="{{ params.output_dir }}/clip_{{ ti.map_index }}.wav",
    ).expand(prompt=[f"stability chaos clip {n}" for n in range(6)])

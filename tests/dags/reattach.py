"""A DAG for the retry re-attach test: the first try times out, the retry must re-attach."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG

from airflow_provider_stableaudio.operators.stable_audio import StableAudioGenerateOperator

with DAG("reattach_e2e", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")) as dag:
    StableAudioGenerateOperator(
        task_id="generate",
        prompt="a retry-proof drum loop",
        seconds_total=1,
        poll_interval=0.2,
        timeout=2,
        retries=1,
        retry_delay=timedelta(seconds=0),
    )

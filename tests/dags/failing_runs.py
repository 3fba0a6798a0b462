"""DAGs whose generation fails, for the secrets test: one is refused (401), one never gets an answer (500)."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_provider_stableaudio.operators.stable_audio import StableAudioGenerateOperator

for reason in ("401", "500"):
    with DAG(f"failing_{reason}", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):
        StableAudioGenerateOperator(
            task_id="generate",
            prompt="a canary song",
            seconds_total=1,
            conn_id=f"stableaudio_{reason}",
            poll_interval=0.2,
            timeout=2,
            output_path="/tmp/stableaudio-tests/never-written.wav",
        )

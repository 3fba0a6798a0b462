"""DAGs whose sensor ends without a clip, deferred: it must end the way every Airflow sensor does."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_provider_stableaudio.operators.stable_audio import StableAudioGenerateOperator
from airflow_provider_stableaudio.sensors.stable_audio import StableAudioGenerationSensor

OUTCOMES = {
    # dag id: (prompt, sensor settings)
    "sensor_soft_fail_times_out": ("a very long drone", {"soft_fail": True, "timeout": 1}),
    "sensor_never_fail_meets_an_error": ("[emulator:error] a broken bell", {"never_fail": True}),
}

for dag_id, (prompt, settings) in OUTCOMES.items():
    with DAG(dag_id, schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):
        submit = StableAudioGenerateOperator(
            task_id="submit", prompt=prompt, seconds_total=1, wait_for_completion=False
        )
        wait = StableAudioGenerationSensor(
            task_id="wait",
            generation_id="{{ ti.xcom_pull(task_ids='submit', key='generation_id') }}",
            poke_interval=0.2,
            **settings,
        )
        submit >> wait

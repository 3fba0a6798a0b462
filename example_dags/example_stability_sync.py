"""Generate a short clip with Stable Audio 2.5, synchronously, on Stability AI's own API.

Stable Audio 2.5 answers with the clip itself after seconds to tens of seconds: the HTTP call is the
wait, so the task runs on its worker and streams the answer straight to ``output_path``. Nothing is
deferred and there is no generation id. Uses the ``stability_default`` connection.
"""

from __future__ import annotations

import os
import tempfile

import pendulum
from airflow.sdk import DAG, Param

from airflow_provider_stableaudio.operators.stable_audio import StableAudioGenerateOperator

OUTPUT_DIR = os.environ.get("STABLEAUDIO_OUTPUT_DIR", os.path.join(tempfile.gettempdir(), "stable-audio"))

with DAG(
    dag_id="example_stability_sync",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "stable-audio", "stability"],
    params={
        "prompt": Param("A bright marimba sting for a podcast intro", type="string", minLength=1),
        "output_dir": Param(OUTPUT_DIR, type="string"),
    },
) as dag:
    # [START howto_operator_stability_sync]
    sting = StableAudioGenerateOperator(
        task_id="generate_sting",
        conn_id="stability_default",
        model="stable-audio-2.5",
        prompt="{{ params.prompt }}",
        duration=4,
        seed=1234,
        output_format="wav",
        output_path="{{ params.output_dir }}/{{ dag.dag_id }}/sting_{{ dag_run.run_after | ts_nodash }}.wav",
    )
    # [END howto_operator_stability_sync]

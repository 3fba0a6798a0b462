"""DAGs of the real-stack tier (tests/system): a sized fan-out, fan-outs on keys of their own under the
emulator's rate limit, a retry that re-attaches, a wait on a worker that is killed, a rescheduling sensor."""

from __future__ import annotations

import os
import tempfile
from datetime import timedelta

import pendulum
from airflow.sdk import DAG, task

from airflow_provider_stableaudio.operators.stable_audio import StableAudioGenerateOperator
from airflow_provider_stableaudio.sensors.stable_audio import StableAudioGenerationSensor

OUTPUT_DIR = os.environ.get("STABLEAUDIO_OUTPUT_DIR", os.path.join(tempfile.gettempdir(), "stable-audio"))
START = pendulum.datetime(2026, 1, 1, tz="UTC")
RUN_DIR = "{{ params.output_dir }}/{{ dag.dag_id }}/{{ run_id | replace(':', '_') }}"

with DAG(
    dag_id="stack_fanout",
    schedule=None,
    start_date=START,
    catchup=False,
    params={"count": 40, "output_dir": OUTPUT_DIR},
):

    @task
    def prompts(params: dict | None = None) -> list[str]:
        return [f"Clip {i}: a short synth pluck in C" for i in range(int(params["count"]))]

    StableAudioGenerateOperator.partial(
        task_id="generate",
        seconds_total=2,
        poll_interval=2,
        output_path=RUN_DIR + "/clip_{{ ti.map_index }}.wav",
    ).expand(prompt=prompts())

# The rate-limit scenario: two fan-outs at once, each on a connection (and API key) of its own, one
# with the connection's request budget (`max_requests_per_second`) and one without. The connections are
# added by the scenario (tests/system/test_real_stack.py).
RATE_LIMIT_CONNECTIONS = {
    "stack_rate_limit_budgeted": "stableaudio_rate_limit_budgeted",
    "stack_rate_limit_unbudgeted": "stableaudio_rate_limit_unbudgeted",
}
for rate_limit_dag_id, rate_limit_conn_id in RATE_LIMIT_CONNECTIONS.items():
    with DAG(
        dag_id=rate_limit_dag_id,
        schedule=None,
        start_date=START,
        catchup=False,
        params={"count": 12, "output_dir": OUTPUT_DIR},
    ):

        @task
        def rate_limit_prompts(dag_id: str = rate_limit_dag_id, params: dict | None = None) -> list[str]:
            return [f"{dag_id} clip {i}: a short marimba figure" for i in range(int(params["count"]))]

        StableAudioGenerateOperator.partial(
            task_id="generate",
            conn_id=rate_limit_conn_id,
            seconds_total=2,
            poll_interval=2,
            output_path=RUN_DIR + "/clip_{{ ti.map_index }}.wav",
        ).expand(prompt=rate_limit_prompts())

with DAG(
    dag_id="stack_worker_kill",
    schedule=None,
    start_date=START,
    catchup=False,
    params={"output_dir": OUTPUT_DIR},
):
    # Waits on the worker (not deferred), so that killing the worker kills the task mid-wait.
    StableAudioGenerateOperator(
        task_id="generate",
        prompt="A bell rung once in a stone hall",
        seconds_total=2,
        poll_interval=2,
        deferrable=False,
        output_path=RUN_DIR + "/clip.wav",
        retries=1,
        retry_delay=timedelta(seconds=2),
    )

with DAG(
    dag_id="stack_retry", schedule=None, start_date=START, catchup=False, params={"output_dir": OUTPUT_DIR}
):
    StableAudioGenerateOperator(
        task_id="generate",
        prompt="A door creaking open, once",
        seconds_total=2,
        poll_interval=1,
        output_path=RUN_DIR + "/clip.wav",
        retries=1,
        retry_delay=timedelta(seconds=2),
    )

with DAG(
    dag_id="stack_sensor_reschedule",
    schedule=None,
    start_date=START,
    catchup=False,
    params={"output_dir": OUTPUT_DIR},
):
    submit = StableAudioGenerateOperator(
        task_id="submit", prompt="Birdsong at dawn", seconds_total=2, wait_for_completion=False
    )
    wait = StableAudioGenerationSensor(
        task_id="wait_for_clip",
        generation_id="{{ ti.xcom_pull(task_ids='submit', key='generation_id') }}",
        output_path=RUN_DIR + "/clip.wav",
        deferrable=False,
        mode="reschedule",
        # Longer than the seconds Airflow can take to handle a reschedule exit: shorter ones meet
        # upstream race #71580 (docs/deployment.md).
        poke_interval=10,
    )
    submit >> wait

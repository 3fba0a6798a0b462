"""Generate a clip with Stable Audio 3 on Stability AI's own API, and use it downstream.

Stable Audio 3 answers a submission with an id; the task then waits in the triggerer (deferrable),
holding no worker slot, and the worker stores the finished clip at ``output_path`` (Stability's
answer is the audio itself, not a URL). Set up the ``stability_default`` connection first (type
``stability``; see docs/connection.md); with the bundled emulator no API key or network is needed.
"""

from __future__ import annotations

import os
import tempfile
import wave

import pendulum
from airflow.sdk import DAG, Param, task

from airflow_provider_stableaudio.operators.stable_audio import StableAudioGenerateOperator

OUTPUT_DIR = os.environ.get("STABLEAUDIO_OUTPUT_DIR", os.path.join(tempfile.gettempdir(), "stable-audio"))

with DAG(
    dag_id="example_stability_text_to_audio",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "stable-audio", "stability"],
    params={
        "prompt": Param("A cinematic string swell over distant thunder", type="string", minLength=1),
        "seconds": Param(10, type="integer", minimum=1, maximum=380),
        "output_dir": Param(OUTPUT_DIR, type="string"),
    },
) as dag:
    # [START howto_operator_stability_text_to_audio]
    generate = StableAudioGenerateOperator(
        task_id="generate_clip",
        conn_id="stability_default",
        model="stable-audio-3",
        prompt="{{ params.prompt }}",
        duration="{{ params.seconds }}",
        steps=8,
        output_format="wav",
        output_path="{{ params.output_dir }}/{{ dag.dag_id }}/{{ dag_run.run_after | ts_nodash }}.wav",
        poll_interval=2,
    )
    # [END howto_operator_stability_text_to_audio]

    @task
    def describe_clip(stored_at: str) -> float:
        """The task returned where the clip is: read it."""
        with wave.open(stored_at, "rb") as clip:
            seconds = clip.getnframes() / clip.getframerate()
        print(f"Clip {stored_at}: {seconds:.2f} s")
        return seconds

    describe_clip(generate.output)

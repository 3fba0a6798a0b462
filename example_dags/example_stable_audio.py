"""Generate a clip with Stable Audio, save it, and use it downstream.

The generation waits in the triggerer (deferrable), so no worker slot is held for the minute or so
it takes. Set up the ``stableaudio_default`` connection first (see the README); with the bundled
emulator no API key or network is needed.
"""

from __future__ import annotations

# [START quickstart_dag]
import os
import tempfile
import wave

import pendulum
from airflow.sdk import DAG, Param, XComArg, task

# [START import_operator]
from airflow_provider_stableaudio.operators.stable_audio import StableAudioGenerateOperator

# [END import_operator]

OUTPUT_DIR = os.environ.get("STABLEAUDIO_OUTPUT_DIR", os.path.join(tempfile.gettempdir(), "stable-audio"))

with DAG(
    dag_id="example_stable_audio",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "stable-audio"],
    params={
        "prompt": Param("A calm lo-fi beat with warm piano chords", type="string", minLength=1),
        "seconds": Param(8, type="integer", minimum=1, maximum=47),
        "output_dir": Param(OUTPUT_DIR, type="string"),
    },
) as dag:
    # [START howto_operator_stable_audio]
    generate = StableAudioGenerateOperator(
        task_id="generate_clip",
        prompt="{{ params.prompt }}",
        seconds_total="{{ params.seconds }}",
        steps=100,
        output_path="{{ params.output_dir }}/{{ dag.dag_id }}/clip_{{ dag_run.run_after | ts_nodash }}.wav",
        poll_interval=2,
    )
    # [END howto_operator_stable_audio]

    # [START howto_xcom_downstream]
    @task
    def describe_clip(audio_url: str, local_path: str) -> float:
        """Read the downloaded clip and report its length."""
        with wave.open(local_path, "rb") as clip:
            seconds = clip.getnframes() / clip.getframerate()
            print(
                f"Clip {local_path} (from {audio_url}): {seconds:.2f} s, "
                f"{clip.getnchannels()} channels, {clip.getframerate()} Hz"
            )
        return seconds

    describe_clip(generate.output, XComArg(generate, key="local_path"))
    # [END howto_xcom_downstream]
# [END quickstart_dag]

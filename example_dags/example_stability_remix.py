"""Every week, a variation of last week's clip: audio-to-audio on Stable Audio 3 (Stability AI).

The first week has no clip to start from, so it generates one from the prompt alone; every later
week transforms the previous week's clip (``init_audio``) with ``strength`` saying how far the
variation may move from it. The decorated function decides, so the mode follows from the fields it
returns: a prompt alone is text-to-audio, a prompt with ``init_audio`` audio-to-audio.
"""

from __future__ import annotations

import os
import tempfile
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.sdk import DAG, Param, task

OUTPUT_DIR = os.environ.get("STABLEAUDIO_OUTPUT_DIR", os.path.join(tempfile.gettempdir(), "stable-audio"))
# One clip per week, named after the day its run was due (run_after: set for manual runs too).
WEEK_CLIP = "{output_dir}/remix/week_{day:%Y%m%d}.wav"

with DAG(
    dag_id="example_stability_remix",
    schedule="@weekly",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "stable-audio", "stability"],
    params={
        "prompt": Param("A warm synthwave loop with a driving bassline", type="string", minLength=1),
        "strength": Param(0.6, type="number", minimum=0, maximum=1),  # Stable Audio 3: 0..1
        "output_dir": Param(OUTPUT_DIR, type="string"),
    },
) as dag:
    # [START howto_decorator_stability_remix]
    @task.stable_audio(
        conn_id="stability_default",
        model="stable-audio-3",
        duration=8,
        output_format="wav",
        output_path="{{ params.output_dir }}/remix/week_{{ dag_run.run_after | ds_nodash }}.wav",
        poll_interval=2,
    )
    def weekly_variation(params=None, dag_run=None) -> str | dict:
        """Last week's clip, varied; or, the first week, a clip from the prompt alone."""
        last_week = Path(
            WEEK_CLIP.format(output_dir=params["output_dir"], day=dag_run.run_after - timedelta(days=7))
        )
        if not last_week.exists():
            return params["prompt"]
        return {
            "prompt": f"{params['prompt']}, a fresh variation",
            "init_audio": str(last_week),
            "strength": params["strength"],
        }

    weekly_variation()
    # [END howto_decorator_stability_remix]

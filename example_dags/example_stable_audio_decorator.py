"""``@task.stable_audio``: a function computes each request at run time, one mapped clip per topic.

A task picks today's topics; the decorated function turns a topic into a request (a prompt, or a
dict of request fields); the task then generates the clip exactly as ``StableAudioGenerateOperator``
does (deferred, downloaded to ``output_path``, the same XComs and "Stable Audio clip" link).
"""

from __future__ import annotations

import os
import tempfile

import pendulum
from airflow.sdk import DAG, task

# One folder per run, one clip per topic.
CLIP_PATH = "{{ params.output_dir }}/topics/{{ dag_run.run_after | ts_nodash }}/{{ ti.map_index }}.wav"
OUTPUT_DIR = os.environ.get("STABLEAUDIO_OUTPUT_DIR", os.path.join(tempfile.gettempdir(), "stable-audio"))
TOPICS = {
    "Monday": ["sunrise over a harbour", "a busy coffee shop"],
    "Tuesday": ["rain on a greenhouse", "a steam train"],
    "Wednesday": ["a mountain stream", "a night market"],
    "Thursday": ["wind in tall grass", "a bicycle workshop"],
    "Friday": ["a jazz club at closing time", "fireworks far away"],
    "Saturday": ["children at a playground", "waves on a pebble beach"],
    "Sunday": ["church bells in fog", "a quiet library"],
}

with DAG(
    dag_id="example_stable_audio_decorator",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "stable-audio"],
    params={"output_dir": OUTPUT_DIR},
):
    # [START howto_decorator_stable_audio]
    @task
    def todays_topics(dag_run=None) -> list[str]:
        """The topics of the run's weekday."""
        return TOPICS[dag_run.run_after.strftime("%A")]

    @task.stable_audio(
        seconds_total=4,
        output_path=CLIP_PATH,
        poll_interval=2,
    )
    def ambience(topic: str, mood: str) -> dict:
        """Turn a topic into the request: its prompt, and fewer diffusion steps than the default 100."""
        return {"prompt": f"{mood} ambient field recording of {topic}", "steps": 50}

    clips = ambience.partial(mood="Calm").expand(topic=todays_topics())
    # [END howto_decorator_stable_audio]

    @task
    def announce(urls: list[str]) -> list[str]:
        """Downstream tasks read the clips' URLs as from the operator."""
        # All at once: iterating asks for one past the end, and Airflow logs an error
        # (apache/airflow#73175).
        urls = urls[:]
        for url in urls:
            print(f"New ambience: {url}")
        return list(urls)

    announce(clips)

"""A person picks the clip to publish: a few candidates, a review in the Airflow UI, then only the chosen one.

Three candidate intros are generated (one mapped task each, saved under the run's folder). The
``review`` task then waits for a person, in the UI's **Required Actions** (or through the REST API):
its request lists each candidate's prompt with a link that plays it, and offers one option per
candidate plus "Reject". ``publish`` copies only the chosen clip to ``published/`` and announces it
as an event of the ``stable_audio_published_clip`` asset, with the clip's details in the event's
extra. A rejection publishes nothing: ``publish`` is skipped, and no asset event is emitted.

Human-in-the-loop operators come with the standard provider and need Airflow 3.1 or newer.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pendulum
from airflow.providers.common.compat.sdk import AirflowSkipException
from airflow.providers.standard.operators.hitl import HITLOperator
from airflow.sdk import DAG, Asset, XComArg, task

from airflow_provider_stableaudio.operators.stable_audio import StableAudioGenerateOperator

OUTPUT_DIR = os.environ.get("STABLEAUDIO_OUTPUT_DIR", os.path.join(tempfile.gettempdir(), "stable-audio"))
# [START howto_review_candidates]
PROMPTS = [
    "A warm lo-fi piano intro with vinyl crackle",
    "A bright synth-pop intro with hand claps",
    "A fingerpicked acoustic guitar intro",
]
# One option per candidate, in prompt order, and one to turn them all down.
CANDIDATES = [f"Candidate {number}" for number in range(1, len(PROMPTS) + 1)]
REJECT = "Reject"
PUBLISHED_CLIP = Asset("stable_audio_published_clip")
# [END howto_review_candidates]

with DAG(
    dag_id="example_stable_audio_review",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "stable-audio"],
    params={"output_dir": OUTPUT_DIR},
):
    # [START howto_review_generate]
    candidates = StableAudioGenerateOperator.partial(
        task_id="generate_candidates",
        seconds_total=4,
        poll_interval=2,
        # One folder per run; the clips stay there whatever the review decides.
        output_path="{{ params.output_dir }}/review/{{ dag_run.run_after | ts_nodash }}/"
        "candidate_{{ ti.map_index }}.wav",
    ).expand(prompt=PROMPTS)

    @task
    def shortlist(audio_files: list[dict[str, Any]], local_paths: list[str]) -> list[dict[str, Any]]:
        """One entry per candidate: its option, its prompt, its listen link and where it was saved."""
        # A slice reads a mapped task's XComs in one call; iterating asks for one past the end, which
        # Airflow's client logs as an error ("XCom not found", apache/airflow#73175).
        return [
            {"option": option, "prompt": prompt, **audio_file, "local_path": local_path}
            for option, prompt, audio_file, local_path in zip(
                CANDIDATES, PROMPTS, audio_files[:], local_paths[:], strict=True
            )
        ]

    shortlisted = shortlist(XComArg(candidates, key="audio_file"), XComArg(candidates, key="local_path"))
    # [END howto_review_generate]

    # [START howto_review_request]
    review = HITLOperator(
        task_id="review",
        subject="Which intro should we publish?",
        # Markdown, rendered when the task runs: each link plays the candidate's clip (its
        # audio_file URL, as the "Stable Audio clip" button of that mapped task does).
        body=(
            "Listen to each candidate, then choose the one to publish, or reject them all.\n\n"
            "{% for clip in ti.xcom_pull(task_ids='shortlist') %}"
            "- **{{ clip.option }}**: {{ clip.prompt }} "
            "([listen to {{ clip.option }}]({{ clip.url }}), {{ clip.file_size }} bytes)\n"
            "{% endfor %}"
        ),
        options=[*CANDIDATES, REJECT],
    )
    shortlisted >> review
    # [END howto_review_request]

    # [START howto_review_publish]
    @task(outlets=[PUBLISHED_CLIP])
    def publish(
        decision: dict[str, Any],
        shortlist: list[dict[str, Any]],
        *,
        params=None,
        dag_run=None,
        outlet_events=None,
    ) -> dict[str, Any]:
        """Copy the chosen clip to ``published/`` and announce it; skip (publish nothing) on "Reject"."""
        (chosen,) = decision["chosen_options"]
        # No user when a response_timeout passed and the defaults answered.
        reviewer = (decision.get("responded_by_user") or {}).get("name")
        if chosen == REJECT:
            # A skipped task emits no asset event: nothing downstream hears of this run.
            raise AirflowSkipException(f"Rejected by {reviewer or 'the deadline'}: nothing published")
        clip = next(candidate for candidate in shortlist if candidate["option"] == chosen)
        published = Path(params["output_dir"]) / "published" / f"{dag_run.run_after:%Y%m%dT%H%M%S}.wav"
        # A local folder here; with object storage (s3://...), copy with ObjectStoragePath instead.
        published.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(clip["local_path"], published)
        extra = {
            "option": chosen,
            "prompt": clip["prompt"],
            "generation_id": clip["generation_id"],
            "url": clip["url"],
            "file_size": clip["file_size"],
            "credits_used": clip["credits_used"],
            "local_path": str(published),
            "reviewed_by": reviewer,
        }
        outlet_events[PUBLISHED_CLIP].extra = extra
        print(f"Published {chosen} ({clip['prompt']!r}), chosen by {reviewer or 'default'}, to {published}")
        return extra

    publish(review.output, shortlisted)
    # [END howto_review_publish]

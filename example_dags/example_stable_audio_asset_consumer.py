"""Runs whenever a new daily jingle is announced, and reads what the producer attached to the event."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Asset, task

# The asset the example_stable_audio_daily_jingle DAG emits (assets are matched by name).
DAILY_JINGLE = Asset("stable_audio_daily_jingle")

with DAG(
    dag_id="example_stable_audio_asset_consumer",
    schedule=[DAILY_JINGLE],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["example", "stable-audio"],
):

    @task(inlets=[DAILY_JINGLE])
    def publish_jingle(*, inlet_events=None) -> dict:
        """Take the newest jingle's details from its asset event."""
        latest = inlet_events[DAILY_JINGLE][-1]
        extra = dict(latest.extra)
        print(
            f"New jingle: {extra['prompt']!r} ({extra['duration_seconds']} s, {extra['file_size']} bytes, "
            f"{extra['credits_used']} credits) at {extra['local_path'] or extra['url']}"
        )
        return extra

    publish_jingle()

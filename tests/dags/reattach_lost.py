"""DAGs for the tests of what an automatic retry finds: try 1 times out, and before try 2 the emulator
(through its own admin routes) breaks the one serving of the finished clip, or forgets the generation."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG

from airflow_provider_stableaudio.operators.stable_audio import StableAudioGenerateOperator


def break_the_next_serving(context: Any) -> None:
    """``on_retry_callback``: the generation finishes at once, and its one serving is cut short."""
    import requests
    from airflow.sdk import BaseHook

    base_url = BaseHook.get_connection("stability_default").host
    settings = {"generation_seconds": 0, "rate_download_truncated": 1.0, "fault_methods": ["GET"], "seed": 1}
    requests.post(f"{base_url}/_emulator/config", json=settings, timeout=10).raise_for_status()


def forget_the_generation(context: Any) -> None:
    """``on_retry_callback``: the API no longer knows the generation (as after its expiry)."""
    import requests
    from airflow.sdk import BaseHook

    base_url = BaseHook.get_connection("stableaudio_default").host
    requests.post(f"{base_url}/_emulator/reset", timeout=10).raise_for_status()


with DAG("reattach_unknown", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):
    StableAudioGenerateOperator(
        task_id="generate",
        prompt="a drum loop the API forgets",
        seconds_total=1,
        poll_interval=0.2,
        timeout=1,
        retries=2,
        retry_delay=timedelta(seconds=0),
        on_retry_callback=forget_the_generation,
    )


with DAG("reattach_served_once", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC")):
    StableAudioGenerateOperator(
        task_id="generate",
        conn_id="stability_default",
        prompt="a served-once cello drone",
        duration=1,
        output_format="wav",
        output_path=os.environ.get("STABLEAUDIO_TEST_OUTPUT", "/nonexistent/clip.wav"),
        poll_interval=0.2,
        timeout=1,
        retries=2,  # a retry after the lost result would be a third try: there must be none
        retry_delay=timedelta(seconds=0),
        on_retry_callback=break_the_next_serving,
    )

"""The "Stable Audio clip" link: computed by the worker at the end of every try, empty until there is a clip."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from airflow_provider_stableaudio.links import StableAudioClipLink
from tests.operators.test_stable_audio_operator import operator


@pytest.mark.parametrize(
    ("state", "task_kwargs"),
    [
        ("deferred", {}),
        ("up_for_reschedule", {}),
        ("failed", {}),
        ("up_for_retry", {}),
        ("success", {"wait_for_completion": False}),  # submitted only: there is no clip
    ],
)
def test_link_reads_no_xcom_while_there_is_no_clip(
    monkeypatch: pytest.MonkeyPatch, state: str, task_kwargs: dict
) -> None:
    # Reading the missing XCom makes Airflow's API client log "XCom not found" at error level.
    from airflow.providers.common.compat.sdk import XCom

    def no_read(**kwargs):
        raise AssertionError(f"XCom read while the task is {state}: {kwargs}")

    monkeypatch.setattr(XCom, "get_value", no_read)
    ti = SimpleNamespace(state=state, dag_id="d", task_id="t", run_id="r", map_index=-1, try_number=1)
    assert StableAudioClipLink().get_link(operator(**task_kwargs), ti_key=ti) == ""


def test_link_of_a_successful_try_is_the_clip_url(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.providers.common.compat.sdk import XCom

    monkeypatch.setattr(XCom, "get_value", lambda *, ti_key, key: {"url": f"http://127.0.0.1/{key}.wav"})
    ti = SimpleNamespace(state="success", dag_id="d", task_id="t", run_id="r", map_index=-1, try_number=1)
    assert StableAudioClipLink().get_link(operator(), ti_key=ti) == "http://127.0.0.1/audio_file.wav"


@pytest.mark.parametrize(
    "url",
    ["javascript:alert(document.cookie)", " javascript:alert(1)", "java\tscript:alert(1)", "file:///etc/passwd",
     "data:text/html,<script>alert(1)</script>", "//evil.example/clip.wav", "https:clip.wav"],
)  # fmt: skip
def test_link_is_empty_for_a_url_that_is_not_http(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    # The URL is the API's answer, shown as a button in Airflow's UI: only a web address may be one.
    from airflow.providers.common.compat.sdk import XCom

    monkeypatch.setattr(XCom, "get_value", lambda *, ti_key, key: {"url": url})
    ti = SimpleNamespace(state="success", dag_id="d", task_id="t", run_id="r", map_index=-1, try_number=1)
    assert StableAudioClipLink().get_link(operator(), ti_key=ti) == ""

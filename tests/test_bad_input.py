"""Bad input: a clear error naming the field and the allowed range, and not one request sent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowException, AirflowFailException

from airflow_provider_stableaudio.exceptions import StableAudioConfigError, StableAudioValidationError
from airflow_provider_stableaudio.generation_request import GenerationRequest
from airflow_provider_stableaudio.hooks.stable_audio import StableAudioHook
from airflow_provider_stableaudio.operators.stable_audio import StableAudioGenerateOperator
from tests.conftest import API_KEY, set_connection
from tests.operators.test_stable_audio_operator import context

BLOCKER = "a-regular-file"  # created in tmp_path: a folder cannot be made beneath it


def run_operator(tmp_path: Path, **kwargs: Any) -> None:
    kwargs.setdefault("prompt", "a gentle flute")
    if isinstance(kwargs.get("output_path"), str):
        kwargs["output_path"] = str(tmp_path / kwargs["output_path"])
    execute(StableAudioGenerateOperator(task_id="t", **kwargs))


def execute(operator: StableAudioGenerateOperator) -> None:
    """Run the task; re-raise the provider's error from the ``AirflowFailException`` that must carry it."""
    try:
        operator.execute(context())
    except (StableAudioValidationError, StableAudioConfigError) as error:
        raise AssertionError(f"{error!r} would be retried: input errors must fail without retries") from error
    except AirflowFailException as failed:
        raise failed.__cause__ from None  # type: ignore[misc]


CASES: list[tuple[str, dict[str, Any], type[Exception], list[str]]] = [
    ("empty prompt", {"prompt": ""}, StableAudioValidationError, ["prompt must be a non-empty string", "''"]),
    ("blank prompt", {"prompt": "  \n "}, StableAudioValidationError, ["prompt must be a non-empty string"]),
    ("prompt of the wrong type", {"prompt": ["a", "list"]}, StableAudioValidationError, ["prompt", "list"]),
    ("prompt missing", {"prompt": None}, StableAudioValidationError, ["prompt is required"]),
    ("seconds_total 0", {"seconds_total": 0}, StableAudioValidationError, ["seconds_total", "1 to 47", "got 0"]),
    ("seconds_total 48", {"seconds_total": 48}, StableAudioValidationError, ["seconds_total", "1 to 47", "got 48"]),
    ("seconds_total -1", {"seconds_total": -1}, StableAudioValidationError, ["seconds_total", "1 to 47", "got -1"]),
    ("seconds_total 1.5", {"seconds_total": 1.5}, StableAudioValidationError, ["seconds_total", "1.5 (float)"]),
    ("seconds_total '8.5' from a template", {"seconds_total": "8.5"}, StableAudioValidationError,
     ["seconds_total must be an integer from 1 to 47", "'8.5' (str)"]),
    ("seconds_total '48' from a template", {"seconds_total": "48"}, StableAudioValidationError,
     ["seconds_total must be an integer from 1 to 47", "got 48"]),
    ("seconds_start past the end", {"seconds_total": 5, "seconds_start": 6}, StableAudioValidationError,
     ["seconds_start must be at most seconds_total (5), got 6"]),
    ("seconds_start 48", {"seconds_start": 48}, StableAudioValidationError, ["seconds_start", "0 to 47"]),
    ("steps 0", {"steps": 0}, StableAudioValidationError, ["steps", "1 to 1000", "got 0"]),
    ("steps 1001", {"steps": 1001}, StableAudioValidationError, ["steps", "1 to 1000", "got 1001"]),
    ("unknown model", {"model": "stable-audio-9"}, StableAudioValidationError,
     ["model must be one of ['stable-audio']", "'stable-audio-9'"]),
    ("poll_interval 0", {"poll_interval": 0}, StableAudioConfigError, ["poll_interval", "greater than 0", "got 0"]),
    ("poll_interval negative", {"poll_interval": -2}, StableAudioConfigError, ["poll_interval", "got -2"]),
    ("timeout 0", {"timeout": 0}, StableAudioConfigError, ["timeout", "greater than 0", "got 0"]),
    ("output_path under a file", {"output_path": f"{BLOCKER}/sub/clip.wav"}, StableAudioConfigError,
     ["output_path folder", "cannot be created"]),
    ("output_path is a folder", {"output_path": ""}, StableAudioConfigError, ["is a folder"]),
]  # fmt: skip


@pytest.mark.parametrize(("name", "kwargs", "error", "words"), CASES, ids=[c[0] for c in CASES])
def test_operator_input(
    connection, tmp_path: Path, name: str, kwargs: dict, error: type, words: list[str]
) -> None:
    (tmp_path / BLOCKER).write_text("")
    with pytest.raises(error) as caught:
        run_operator(tmp_path, **kwargs)
    for word in words:
        assert word in str(caught.value), name
    assert connection.ledger()["requests"] == []


def test_unknown_extra_field(connection) -> None:
    with pytest.raises(StableAudioValidationError, match=r"unknown field\(s\) \['seed'\]") as caught:
        StableAudioHook().submit_generation(GenerationRequest.build(prompt="x", seed=42))
    assert "allowed fields: ['prompt', 'seconds_start', 'seconds_total', 'steps']" in str(caught.value)
    assert connection.ledger()["requests"] == []


CONNECTION_CASES: list[tuple[str, dict[str, Any] | None, type[Exception], list[str]]] = [
    ("missing connection", None, AirflowException, ["stableaudio_default"]),
    ("connection without a password", {}, StableAudioConfigError,
     ["connection 'stableaudio_default' has no API key", "password (API Key) field"]),
    ("malformed base URL", {"host": "htp:/127.0.0.1", "password": API_KEY}, StableAudioConfigError,
     ["malformed Base URL 'htp:/127.0.0.1'", "https://api.aimlapi.com"]),
    ("non-numeric timeout extra", {"password": API_KEY, "extra": {"timeout": "soon"}}, StableAudioConfigError,
     ["invalid 'timeout' extra 'soon'"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "fields", "error", "words"), CONNECTION_CASES, ids=[c[0] for c in CONNECTION_CASES]
)
def test_connection_problems(
    emulator, monkeypatch: pytest.MonkeyPatch, name: str, fields: dict | None, error: type, words: list[str]
) -> None:
    monkeypatch.delenv("AIRFLOW_CONN_STABLEAUDIO_DEFAULT", raising=False)
    if fields is not None:
        fields = {"host": emulator.base_url, **fields}
        if "extra" in fields:
            import json

            fields["extra"] = json.dumps(fields["extra"])
        set_connection(monkeypatch, **fields)
    with pytest.raises(error) as caught:
        execute(StableAudioGenerateOperator(task_id="t", prompt="x"))
    for word in words:
        assert word in str(caught.value), name
    assert emulator.ledger()["requests"] == []


def test_the_table_is_big_enough() -> None:
    assert len(CASES) + 1 + len(CONNECTION_CASES) >= 20

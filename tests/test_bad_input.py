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
    ("seconds_start 48", {"seconds_start": 48}, StableAudioValidationError, ["seconds_start", "1 to 47", "got 48"]),
    ("seconds_start 0", {"seconds_start": 0}, StableAudioValidationError, ["seconds_start", "1 to 47", "got 0"]),
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


WAV = "input.wav"  # an 8 s WAV in tmp_path
STABILITY_CASES: list[tuple[str, dict[str, Any], type[Exception], list[str]]] = [
    ("duration 0", {"duration": 0}, StableAudioValidationError, ["duration", "1 to 380", "got 0"]),
    ("duration 381 on Stable Audio 3", {"duration": 381}, StableAudioValidationError, ["duration", "1 to 380", "381"]),
    ("duration 191 on Stable Audio 2.5", {"model": "stable-audio-2.5", "duration": 191}, StableAudioValidationError,
     ["duration", "1 to 190", "191"]),
    ("steps 3", {"steps": 3}, StableAudioValidationError, ["steps", "4 to 8", "got 3"]),
    ("steps 9", {"steps": 9}, StableAudioValidationError, ["steps", "4 to 8", "got 9"]),
    ("seed -1", {"seed": -1}, StableAudioValidationError, ["seed", "0 to 4294967294", "got -1"]),
    ("seed 2**32 - 1", {"seed": 4294967295}, StableAudioValidationError, ["seed", "0 to 4294967294"]),
    ("cfg_scale 0.5", {"cfg_scale": 0.5}, StableAudioValidationError, ["cfg_scale", "1 to 25", "0.5"]),
    ("cfg_scale 26", {"cfg_scale": 26}, StableAudioValidationError, ["cfg_scale", "1 to 25", "26"]),
    ("cfg_scale on Stable Audio 2.5's inpaint", {"model": "stable-audio-2.5", "init_audio": WAV, "mask_start": 1,
     "cfg_scale": 7}, StableAudioValidationError, ["cfg_scale is a field of mode 'text-to-audio' or 'audio-to-audio'"]),
    ("output_format flac", {"output_format": "flac"}, StableAudioValidationError,
     ["output_format must be one of ['mp3', 'wav']", "'flac'"]),
    ("strength 0 on Stable Audio 2.5", {"model": "stable-audio-2.5", "init_audio": WAV, "strength": 0},
     StableAudioValidationError, ["strength", "0.01 to 1", "got 0"]),
    ("strength 1.5", {"init_audio": WAV, "strength": 1.5}, StableAudioValidationError, ["strength", "0 to 1", "1.5"]),
    ("strength without init_audio", {"strength": 0.5}, StableAudioValidationError, ["strength", "init_audio"]),
    ("mask_start after mask_end", {"init_audio": WAV, "mask_start": 5, "mask_end": 4}, StableAudioValidationError,
     ["mask_start (5) must be less than mask_end (4)"]),
    ("mask_end before the API's default mask_start", {"init_audio": WAV, "mask_end": 20}, StableAudioValidationError,
     ["mask_start (30 by the API's default) must be less than mask_end (20)"]),
    ("inpaint on Stable Audio 2", {"model": "stable-audio-2", "init_audio": WAV, "mode": "inpaint"},
     StableAudioValidationError, ["mode must be one of ['text-to-audio', 'audio-to-audio']", "model='stable-audio-2.5'"]),
    ("a mask on Stable Audio 2", {"model": "stable-audio-2", "init_audio": WAV, "mask_start": 1},
     StableAudioValidationError, ["mask_start is a field of mode 'inpaint'", "model='stable-audio-2.5'"]),
    ("mask_end past 380 s", {"init_audio": WAV, "mask_start": 1, "mask_end": 400}, StableAudioValidationError,
     ["mask_end", "0 to 380", "400"]),
    ("strength with a mask", {"init_audio": WAV, "strength": 0.5, "mask_start": 1}, StableAudioValidationError,
     ["strength", "mask_start"]),
    ("an AI/ML API field", {"seconds_total": 10}, StableAudioValidationError, ["unknown field(s) ['seconds_total']"]),
    ("missing output_path", {"output_path": None}, StableAudioConfigError,
     ["output_path is required with a Stability AI API connection"]),
    ("AI/ML API model on a Stability connection", {"model": "stable-audio"}, StableAudioValidationError,
     ["model 'stable-audio' is served by the AI/ML API", "connection of type 'stableaudio'"]),
    ("wait_for_completion=False on a synchronous model",
     {"model": "stable-audio-2.5", "wait_for_completion": False, "output_path": None}, StableAudioConfigError,
     ["wait_for_completion=False does not apply to stable-audio-2.5"]),
    ("init_audio missing", {"init_audio": "nowhere.wav"}, StableAudioValidationError, ["init_audio", "does not exist"]),
    ("init_audio over 100 MB on Stable Audio 3", {"init_audio": "huge.wav"}, StableAudioValidationError,
     ["init_audio", "stable-audio-3 takes at most 100 MB (100,000,000 bytes)"]),
    ("init_audio over 50 MB on Stable Audio 2.5", {"model": "stable-audio-2.5", "init_audio": "large.wav"},
     StableAudioValidationError, ["init_audio", "stable-audio-2.5 takes at most 50 MB (50,000,000 bytes)"]),
    ("init_audio shorter than 6 s", {"init_audio": "short.wav"}, StableAudioValidationError,
     ["init_audio", "is 5.0 s long; stable-audio-3 takes input clips of 6 to 380 s"]),
    ("init_audio longer than 190 s on Stable Audio 2.5", {"model": "stable-audio-2.5", "init_audio": "long.wav"},
     StableAudioValidationError, ["init_audio", "is 191.0 s long; stable-audio-2.5 takes input clips of 6 to 190 s"]),
    ("init_audio not audio", {"init_audio": "notes.txt"}, StableAudioValidationError,
     ["init_audio", "is not mp3 or wav audio"]),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "kwargs", "error", "words"), STABILITY_CASES, ids=[c[0] for c in STABILITY_CASES]
)
def test_stability_input(
    stability, tmp_path: Path, name: str, kwargs: dict, error: type, words: list[str]
) -> None:
    from airflow_provider_stableaudio.emulator.audio import synthesize_wav

    (tmp_path / WAV).write_bytes(synthesize_wav("input", 8))
    (tmp_path / "notes.txt").write_text("not a sound\n" * 100)
    (tmp_path / "short.wav").write_bytes(synthesize_wav("short", 5))
    (tmp_path / "long.wav").write_bytes(synthesize_wav("long", 191))
    for name, size in (("huge.wav", 100_000_001), ("large.wav", 50_000_001)):
        with (tmp_path / name).open("wb") as sparse:  # sparse: its size on disk costs nothing
            sparse.write(b"RIFF\0\0\0\0WAVE")
            sparse.truncate(size)
    if "init_audio" in kwargs:
        kwargs = {**kwargs, "init_audio": str(tmp_path / kwargs["init_audio"])}
    kwargs = {"output_path": "clip.wav", **kwargs}
    with pytest.raises(error) as caught:
        run_operator(tmp_path, conn_id="stability_default", **kwargs)
    for word in words:
        assert word in str(caught.value), name
    assert stability.ledger()["requests"] == []


def test_a_stability_model_on_an_aimlapi_connection_names_the_connection_type_it_needs(connection) -> None:
    with pytest.raises(StableAudioValidationError) as caught:
        execute(StableAudioGenerateOperator(task_id="t", prompt="x", model="stable-audio-3", duration=10))
    assert "model 'stable-audio-3' is served by the Stability AI API" in str(caught.value)
    assert "use a connection of type 'stability' (such as 'stability_default')" in str(caught.value)
    assert caught.value.field == "model"
    assert connection.ledger()["requests"] == []


def test_the_table_is_big_enough() -> None:
    assert len(CASES) + 1 + len(CONNECTION_CASES) >= 20
    assert len(STABILITY_CASES) >= 20

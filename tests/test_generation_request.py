"""The request model: defaults, ranges, types and the model registry."""

from __future__ import annotations

import pytest

from airflow_provider_stableaudio.exceptions import StableAudioValidationError
from airflow_provider_stableaudio.generation_request import (
    MODELS,
    GenerationRequest,
    IntField,
    ModelSpec,
    TextField,
)


def test_defaults_are_filled_in() -> None:
    request = GenerationRequest.build(prompt="rain on a tin roof")
    assert request.to_json() == {
        "model": "stable-audio",
        "prompt": "rain on a tin roof",
        "seconds_total": 30,
        "steps": 100,
    }
    assert request.duration_seconds == 30


def test_every_field_passes_through() -> None:
    request = GenerationRequest.build(
        "stable-audio", prompt="drums", seconds_total=47, seconds_start=0, steps=1000
    )
    assert request.params == {"prompt": "drums", "seconds_total": 47, "seconds_start": 0, "steps": 1000}


def test_none_means_not_given() -> None:
    request = GenerationRequest.build(prompt="x", seconds_start=None, steps=None)
    assert "seconds_start" not in request.params
    assert request.params["steps"] == 100


@pytest.mark.parametrize(
    ("params", "field", "words"),
    [
        ({}, "prompt", ["prompt is required"]),
        ({"prompt": ""}, "prompt", ["prompt must be a non-empty string"]),
        ({"prompt": "   "}, "prompt", ["prompt must be a non-empty string"]),
        ({"prompt": 42}, "prompt", ["prompt must be a non-empty string", "42", "int"]),
        ({"prompt": "x", "seconds_total": 0}, "seconds_total", ["from 1 to 47", "got 0"]),
        ({"prompt": "x", "seconds_total": 48}, "seconds_total", ["from 1 to 47", "got 48"]),
        ({"prompt": "x", "seconds_total": -1}, "seconds_total", ["from 1 to 47", "got -1"]),
        ({"prompt": "x", "seconds_total": 1.5}, "seconds_total", ["an integer", "1.5", "float"]),
        (
            {"prompt": "x", "seconds_total": "8.5"},
            "seconds_total",
            ["an integer from 1 to 47", "'8.5'", "str"],
        ),
        ({"prompt": "x", "seconds_total": "eight"}, "seconds_total", ["an integer", "'eight'", "str"]),
        ({"prompt": "x", "seconds_total": ""}, "seconds_total", ["an integer", "''", "str"]),
        ({"prompt": "x", "steps": "1_000"}, "steps", ["an integer", "'1_000'", "str"]),
        ({"prompt": "x", "steps": "1e3"}, "steps", ["an integer", "'1e3'", "str"]),
        ({"prompt": "x", "seconds_total": "48"}, "seconds_total", ["from 1 to 47", "got 48"]),
        ({"prompt": "x", "seconds_total": True}, "seconds_total", ["an integer", "bool"]),
        ({"prompt": "x", "seconds_start": -1}, "seconds_start", ["from 0 to 47", "got -1"]),
        ({"prompt": "x", "seconds_start": 48}, "seconds_start", ["from 0 to 47", "got 48"]),
        (
            {"prompt": "x", "seconds_total": 10, "seconds_start": 11},
            "seconds_start",
            ["seconds_start must be at most seconds_total (10)", "got 11"],
        ),
        ({"prompt": "x", "steps": 0}, "steps", ["from 1 to 1000", "got 0"]),
        ({"prompt": "x", "steps": 1001}, "steps", ["from 1 to 1000", "got 1001"]),
        ({"prompt": "x", "seed": 1}, "seed", ["unknown field(s) ['seed']", "allowed fields"]),
    ],
)
def test_invalid_requests_name_the_field_and_range(params: dict, field: str, words: list[str]) -> None:
    with pytest.raises(StableAudioValidationError) as caught:
        GenerationRequest.build("stable-audio", **params)
    assert caught.value.field == field
    assert isinstance(caught.value, ValueError)
    for word in words:
        assert word in str(caught.value)


@pytest.mark.parametrize(("text", "number"), [("8", 8), (" 8 ", 8), ("\t12\n", 12), ("+3", 3), ("047", 47)])
def test_integer_fields_accept_whole_numbers_written_as_text(text: str, number: int) -> None:
    # "{{ params.seconds }}" renders as text unless the DAG sets render_template_as_native_obj.
    request = GenerationRequest.build("stable-audio", prompt="x", seconds_total=text, steps=text)
    assert request.params["seconds_total"] == number
    assert request.params["steps"] == number
    assert request.to_json()["seconds_total"] == number


def test_unknown_model_lists_the_known_ones() -> None:
    with pytest.raises(
        StableAudioValidationError, match=r"model must be one of \['stable-audio'\], got 'lyria'"
    ):
        GenerationRequest.build("lyria", prompt="x")


def test_a_new_model_is_data(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = ModelSpec(
        model_id="elevenlabs/eleven_music",
        fields=(
            TextField("prompt", max_length=2000, required=True),
            IntField("music_length_ms", 10000, 300000),
        ),
    )
    monkeypatch.setitem(MODELS, spec.model_id, spec)
    request = GenerationRequest.build(spec.model_id, prompt="a", music_length_ms=10000)
    assert request.to_json() == {"model": spec.model_id, "prompt": "a", "music_length_ms": 10000}
    assert request.duration_seconds is None
    with pytest.raises(StableAudioValidationError, match="at most 2000 characters, got 2001 characters"):
        GenerationRequest.build(spec.model_id, prompt="a" * 2001)

"""The request model: defaults, ranges, types and the model registry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from airflow_provider_stableaudio.exceptions import StableAudioValidationError
from airflow_provider_stableaudio.generation_request import (
    MODELS,
    GenerationRequest,
    IntField,
    ModelSpec,
    TextField,
    default_model,
    returned_fields,
    service_of,
)
from airflow_provider_stableaudio.models import number_text
from tests.test_input_audio import sparse_wav, write_wav

EIGHT_SECONDS = 8 * 8000  # frames of write_wav's 8 kHz mono: Stability takes input clips of 6 s or more


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
        "stable-audio", prompt="drums", seconds_total=47, seconds_start=1, steps=1000
    )
    assert request.params == {"prompt": "drums", "seconds_total": 47, "seconds_start": 1, "steps": 1000}


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
        # Every published schema says 1..47: 0 is refused before it is sent.
        ({"prompt": "x", "seconds_start": 0}, "seconds_start", ["from 1 to 47", "got 0"]),
        ({"prompt": "x", "seconds_start": -1}, "seconds_start", ["from 1 to 47", "got -1"]),
        ({"prompt": "x", "seconds_start": 48}, "seconds_start", ["from 1 to 47", "got 48"]),
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


def test_unknown_model_lists_the_known_ones_per_service_and_connection_type() -> None:
    with pytest.raises(StableAudioValidationError) as caught:
        GenerationRequest.build("lyria", prompt="x")
    assert caught.value.field == "model"
    assert str(caught.value) == (
        "model must be one of ['stable-audio'] (AI/ML API, connection type 'stableaudio') "
        "or ['stable-audio-2', 'stable-audio-2.5', 'stable-audio-3'] (Stability AI API, connection type "
        "'stability'), got 'lyria'"
    )


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


# --- Stability AI's models: registry, modes, the multipart form -----------------------------------

SUBMIT_3 = "/v2beta/audio/stable-audio/"
SUBMIT_2 = "/v2beta/audio/stable-audio-2/"


@pytest.fixture
def clip(tmp_path: Path) -> str:
    return str(write_wav(tmp_path / "last-week.wav", EIGHT_SECONDS))


@pytest.mark.parametrize(
    ("model", "service", "asynchronous", "path"),
    [
        ("stable-audio", "aimlapi", True, "/v2/generate/audio"),
        ("stable-audio-3", "stability", True, SUBMIT_3 + "text-to-audio"),
        ("stable-audio-2.5", "stability", False, SUBMIT_2 + "text-to-audio"),
        ("stable-audio-2", "stability", False, SUBMIT_2 + "text-to-audio"),
    ],
)
def test_each_model_knows_its_service_and_how_it_is_submitted(
    model: str, service: str, asynchronous: bool, path: str
) -> None:
    request = GenerationRequest.build(model, prompt="x")
    assert (request.service, request.asynchronous, request.submit_path, request.mode) == (
        service,
        asynchronous,
        path,
        "text-to-audio",
    )
    assert service_of(model) == service


def test_each_service_has_a_default_model() -> None:
    assert (default_model("aimlapi"), default_model("stability")) == ("stable-audio", "stable-audio-3")
    with pytest.raises(
        ValueError, match=r"unknown service 'elevenlabs'; services: \['aimlapi', 'stability'\]"
    ):
        default_model("elevenlabs")


def test_stability_text_to_audio_sends_the_output_format_and_only_what_was_given() -> None:
    request = GenerationRequest.build("stable-audio-3", prompt="rain")
    assert request.params == {"prompt": "rain", "output_format": "mp3"}
    assert request.form_fields() == [
        ("model", "stable-audio-3"),
        ("prompt", "rain"),
        ("output_format", "mp3"),
    ]
    assert request.init_audio is None
    # Not sent: the API's own default, 190 s, is what the clip will be.
    assert request.duration_seconds == 190


def test_every_stability_field_goes_into_the_form_as_text() -> None:
    request = GenerationRequest.build(
        "stable-audio-3",
        prompt="lofi",
        duration=380,
        seed=4294967294,
        steps=8,
        cfg_scale=7.5,
        output_format="wav",
    )
    assert request.form_fields() == [
        ("model", "stable-audio-3"),
        ("prompt", "lofi"),
        ("duration", "380"),
        ("seed", "4294967294"),
        ("steps", "8"),
        ("cfg_scale", "7.5"),
        ("output_format", "wav"),
    ]
    assert request.duration_seconds == 380
    assert request.to_json()["cfg_scale"] == 7.5


@pytest.mark.parametrize(
    ("text", "number", "form"),
    [
        ("0.5", 0.5, "0.5"),
        (" 0.25 ", 0.25, "0.25"),
        ("1", 1, "1"),
        ("1.0", 1.0, "1"),
        (".5", 0.5, "0.5"),
        ("5e-2", 0.05, "0.05"),
        ("+0.75", 0.75, "0.75"),
    ],
)
def test_number_fields_accept_numbers_written_as_text(clip: str, text: str, number: float, form: str) -> None:
    # "{{ params.strength }}" renders as text, as "0.5".
    request = GenerationRequest.build("stable-audio-2.5", prompt="x", init_audio=clip, strength=text)
    assert request.params["strength"] == number
    assert ("strength", form) in request.form_fields()


@pytest.mark.parametrize(
    ("value", "text"), [(7, "7"), (7.0, "7"), (0.01, "0.01"), (1e-05, "0.00001"), (12.125, "12.125")]
)
def test_numbers_are_written_plainly(value: float, text: str) -> None:
    assert number_text(value) == text


@pytest.mark.parametrize(
    ("params", "mode", "path"),
    [
        ({}, "text-to-audio", SUBMIT_3 + "text-to-audio"),
        ({"init_audio": True}, "audio-to-audio", SUBMIT_3 + "audio-to-audio"),
        ({"init_audio": True, "strength": 0.4}, "audio-to-audio", SUBMIT_3 + "audio-to-audio"),
        ({"init_audio": True, "mask_start": 4}, "inpaint", SUBMIT_3 + "inpaint"),
        ({"init_audio": True, "mask_end": 38}, "inpaint", SUBMIT_3 + "inpaint"),
        ({"init_audio": True, "mask_start": 4, "mask_end": 8}, "inpaint", SUBMIT_3 + "inpaint"),
        ({"mode": "text-to-audio"}, "text-to-audio", SUBMIT_3 + "text-to-audio"),
        ({"mode": "audio-to-audio", "init_audio": True}, "audio-to-audio", SUBMIT_3 + "audio-to-audio"),
        ({"mode": "inpaint", "init_audio": True}, "inpaint", SUBMIT_3 + "inpaint"),
        ({"mode": " inpaint ", "init_audio": True, "mask_start": 1}, "inpaint", SUBMIT_3 + "inpaint"),
    ],
)
def test_the_mode_follows_from_the_fields_or_is_given(clip: str, params: dict, mode: str, path: str) -> None:
    if params.get("init_audio"):
        params["init_audio"] = clip
    request = GenerationRequest.build("stable-audio-3", prompt="x", **params)
    assert (request.mode, request.submit_path) == (mode, path)
    assert (request.init_audio is not None) == ("init_audio" in params)


def test_the_input_clip_is_checked_and_kept_but_not_a_form_field(clip: str) -> None:
    request = GenerationRequest.build(
        "stable-audio-2.5", prompt="x", init_audio=clip, mask_start=30, mask_end=190
    )
    assert request.init_audio is not None
    assert (request.init_audio.location, request.init_audio.content_type) == (clip, "audio/wav")
    # Stable Audio 2.5's inpaint path names the model: the form has no model field.
    assert request.form_fields() == [
        ("prompt", "x"),
        ("output_format", "mp3"),
        ("mask_start", "30"),
        ("mask_end", "190"),
    ]
    assert request.submit_path == SUBMIT_2 + "inpaint"


@pytest.mark.parametrize("mode", ["text-to-audio", "audio-to-audio"])
def test_stable_audio_2_5_names_its_model_outside_inpaint(clip: str, mode: str) -> None:
    audio = {"init_audio": clip} if mode == "audio-to-audio" else {}
    request = GenerationRequest.build("stable-audio-2.5", prompt="x", mode=mode, cfg_scale=3, **audio)
    assert request.form_fields()[0] == ("model", "stable-audio-2.5")
    assert ("cfg_scale", "3") in request.form_fields()


def test_a_fractional_duration_is_sent_as_given() -> None:
    request = GenerationRequest.build("stable-audio-3", prompt="x", duration="12.5")
    assert request.params["duration"] == 12.5
    assert ("duration", "12.5") in request.form_fields()
    assert request.duration_seconds == 12.5


def test_the_fingerprint_of_a_text_request_is_unchanged_by_modes() -> None:
    # Digests from before modes existed: a retry after an upgrade still re-attaches.
    assert GenerationRequest.build(prompt="rain on a tin roof").fingerprint() == "4387695447172c08"
    drums = GenerationRequest.build(
        "stable-audio", prompt="drums", seconds_total=8, steps=20, seconds_start=2
    )
    assert drums.fingerprint() == "1c844f64d35a8116"


def test_the_fingerprint_covers_the_mode_and_the_input_clips_location_and_size(tmp_path: Path) -> None:
    first, other = write_wav(tmp_path / "a.wav", EIGHT_SECONDS), write_wav(tmp_path / "b.wav", EIGHT_SECONDS)

    def digest(**params: Any) -> str:
        return GenerationRequest.build("stable-audio-3", prompt="x", **params).fingerprint()

    base = digest(init_audio=first)
    assert digest(init_audio=str(first)) == base
    assert len({base, digest(), digest(init_audio=other), digest(init_audio=first, mode="inpaint")}) == 4
    write_wav(first, frames=EIGHT_SECONDS + 100)
    assert digest(init_audio=first) != base


def test_returned_fields_take_the_fields_of_a_stability_model(clip: str) -> None:
    returned = {"prompt": "x", "init_audio": clip, "strength": 0.3, "mode": "audio-to-audio", "seed": 7}
    assert returned_fields(returned, model="stable-audio-3") == returned
    with pytest.raises(StableAudioValidationError) as caught:
        returned_fields({"prompt": "x", "seconds_total": 8}, model="stable-audio-2.5")
    assert str(caught.value) == (
        "returned a dict with unknown field(s) ['seconds_total']; return the prompt (a string) or a dict "
        "of request fields from ['cfg_scale', 'duration', 'init_audio', 'mask_end', 'mask_start', 'mode', "
        "'model', 'output_format', 'prompt', 'seed', 'steps', 'strength']"
    )


def test_returned_fields_of_the_aimlapi_model_stay_as_they_were() -> None:
    with pytest.raises(
        StableAudioValidationError,
        match=r"from \['model', 'prompt', 'seconds_start', 'seconds_total', 'steps'\]$",
    ):
        returned_fields({"prompt": "x", "init_audio": "a.wav"})


# --- Stability bad input, at the request level: each field's range per model, modes, init_audio ---

# The ranges of the design file's "Models" table, written out here so that a change to the registry
# shows as a failing row: (model, field, lowest allowed, highest allowed, the range as the message says it).
RANGES: list[tuple[str, str, float, float, str]] = [
    ("stable-audio-3", "duration", 1, 380, "a number from 1 to 380"),
    ("stable-audio-3", "seed", 0, 4294967294, "an integer from 0 to 4294967294"),
    ("stable-audio-3", "steps", 4, 8, "an integer from 4 to 8"),
    ("stable-audio-3", "cfg_scale", 1, 25, "a number from 1 to 25"),
    ("stable-audio-3", "strength", 0, 1, "a number from 0 to 1"),
    ("stable-audio-3", "mask_start", 0, 380, "a number from 0 to 380"),
    ("stable-audio-3", "mask_end", 0, 380, "a number from 0 to 380"),
    ("stable-audio-2.5", "duration", 1, 190, "a number from 1 to 190"),
    ("stable-audio-2.5", "seed", 0, 4294967294, "an integer from 0 to 4294967294"),
    ("stable-audio-2.5", "steps", 4, 8, "an integer from 4 to 8"),
    ("stable-audio-2.5", "cfg_scale", 1, 25, "a number from 1 to 25"),
    ("stable-audio-2.5", "strength", 0.01, 1, "a number from 0.01 to 1"),
    ("stable-audio-2.5", "mask_start", 0, 190, "a number from 0 to 190"),
    ("stable-audio-2.5", "mask_end", 0, 190, "a number from 0 to 190"),
    ("stable-audio-2", "duration", 1, 190, "a number from 1 to 190"),
    ("stable-audio-2", "steps", 30, 100, "an integer from 30 to 100"),
    ("stable-audio-2", "cfg_scale", 1, 25, "a number from 1 to 25"),
    ("stable-audio-2", "strength", 0, 1, "a number from 0 to 1"),
]  # fmt: skip


def build_with(model: str, field: str, value: Any, clip: str) -> GenerationRequest:
    """A request giving ``field`` ``value``, with what its mode needs besides."""
    extra: dict[str, Any] = {}
    if field == "strength":
        extra = {"init_audio": clip}
    elif field.startswith("mask_"):
        extra = {"init_audio": clip, "mode": "inpaint"}
    return GenerationRequest.build(model, prompt="x", **extra, **{field: value})


@pytest.mark.parametrize(
    ("model", "field", "low", "high", "allowed"), RANGES, ids=[f"{r[0]} {r[1]}" for r in RANGES]
)
def test_each_stability_field_takes_its_range_and_nothing_outside(
    clip: str, model: str, field: str, low: float, high: float, allowed: str
) -> None:
    for value in (low, high):
        if field.startswith("mask_"):
            # Each end of a mask's range is within range; mask_start < mask_end is checked apart.
            (spec_field,) = [f for f in MODELS[model].fields_of("inpaint") if f.name == field]
            assert spec_field.check(value) == value
        else:
            assert build_with(model, field, value, clip).params[field] == value
    step = 0.01 if isinstance(low, float) else 1
    for value in (round(low - step, 2), high + 1):
        with pytest.raises(StableAudioValidationError) as caught:
            build_with(model, field, value, clip)
        assert caught.value.field == field
        assert str(caught.value) == f"{field} must be {allowed}, got {number_text(value)}"


def test_a_field_a_model_does_not_take_is_refused() -> None:
    with pytest.raises(
        StableAudioValidationError,
        match=r"unknown field\(s\) \['strength_of_rain'\] for model 'stable-audio-2.5'",
    ) as caught:
        GenerationRequest.build("stable-audio-2.5", prompt="x", strength_of_rain=7)
    assert caught.value.field == "strength_of_rain"


def test_stable_audio_2_inpaint_is_refused_naming_the_model_that_inpaints(clip: str) -> None:
    for params, field in (({"mode": "inpaint"}, "mode"), ({"mask_start": 2}, "mask_start")):
        with pytest.raises(StableAudioValidationError) as caught:
            GenerationRequest.build("stable-audio-2", prompt="x", init_audio=clip, **params)
        assert caught.value.field == field
        assert "model='stable-audio-2.5'" in str(caught.value)


BAD: list[tuple[str, str, dict[str, Any], str, str]] = [
    # (case, model, params; "CLIP" stands for a valid wav, field, the message)
    ("prompt over 10000 characters", "stable-audio-3", {"prompt": "a" * 10001}, "prompt",
     "prompt must be a non-empty string of at most 10000 characters, got 10001 characters"),
    ("duration as a word", "stable-audio-3", {"duration": "long"}, "duration",
     "duration must be a number from 1 to 380, got 'long' (str)"),
    ("cfg_scale as a word", "stable-audio-3", {"cfg_scale": "high"}, "cfg_scale",
     "cfg_scale must be a number from 1 to 25, got 'high' (str)"),
    ("cfg_scale True", "stable-audio-3", {"cfg_scale": True}, "cfg_scale",
     "cfg_scale must be a number from 1 to 25, got True (bool)"),
    ("cfg_scale nan", "stable-audio-3", {"cfg_scale": float("nan")}, "cfg_scale",
     "cfg_scale must be a number from 1 to 25, got nan"),
    ("cfg_scale 'inf' from a template", "stable-audio-3", {"cfg_scale": "inf"}, "cfg_scale",
     "cfg_scale must be a number from 1 to 25, got 'inf' (str)"),
    ("output_format flac", "stable-audio-2.5", {"output_format": "flac"}, "output_format",
     "output_format must be one of ['mp3', 'wav'], got 'flac'"),
    ("output_format not text", "stable-audio-2.5", {"output_format": 3}, "output_format",
     "output_format must be one of ['mp3', 'wav'], got 3 (int)"),
    ("unknown mode", "stable-audio-3", {"mode": "remix"}, "mode",
     "mode must be one of ['text-to-audio', 'audio-to-audio', 'inpaint'] for model 'stable-audio-3', got 'remix'"),
    ("a mode of another service", "stable-audio", {"mode": "inpaint"}, "mode",
     "mode must be one of ['text-to-audio'] for model 'stable-audio', got 'inpaint'"),
    ("init_audio on the AI/ML API", "stable-audio", {"init_audio": "CLIP"}, "init_audio",
     "init_audio is not taken by model 'stable-audio': it runs in mode(s) ['text-to-audio'] only"),
    ("strength without init_audio", "stable-audio-3", {"strength": 0.5}, "strength",
     "strength is a field of mode 'audio-to-audio', which transforms init_audio, and no init_audio was given: "
     "give init_audio, or leave strength out"),
    ("mask without init_audio", "stable-audio-2.5", {"mask_end": 8}, "mask_end",
     "mask_end is a field of mode 'inpaint', which transforms init_audio, and no init_audio was given: "
     "give init_audio, or leave mask_end out"),
    ("mask_start on audio-to-audio", "stable-audio-3", {"mode": "audio-to-audio", "init_audio": "CLIP", "mask_start": 2},
     "mask_start", "mask_start is a field of mode 'inpaint', not of mode 'audio-to-audio' (given as mode=): "
     "leave mask_start out, or give mode='inpaint'"),
    ("strength on inpaint", "stable-audio-3", {"mode": "inpaint", "init_audio": "CLIP", "strength": 0.5}, "strength",
     "strength is a field of mode 'audio-to-audio', not of mode 'inpaint' (given as mode=): leave strength out, "
     "or give mode='audio-to-audio'"),
    ("strength with a mask", "stable-audio-3", {"init_audio": "CLIP", "strength": 0.5, "mask_start": 2}, "strength",
     "strength is a field of mode 'audio-to-audio', not of mode 'inpaint' (inferred from init_audio with "
     "mask_start): strength and mask_start do not go together, leave one out"),
    ("strength on text-to-audio", "stable-audio-3", {"mode": "text-to-audio", "strength": 0.5}, "strength",
     "strength is a field of mode 'audio-to-audio', not of mode 'text-to-audio' (given as mode=): leave strength "
     "out, or give mode='audio-to-audio'"),
    ("audio-to-audio without init_audio", "stable-audio-3", {"mode": "audio-to-audio"}, "init_audio",
     "init_audio is required in mode 'audio-to-audio' (the clip to transform)"),
    ("inpaint without init_audio", "stable-audio-2.5", {"mode": "inpaint", "mask_start": 1}, "init_audio",
     "init_audio is required in mode 'inpaint' (the clip to transform)"),
    ("init_audio on text-to-audio", "stable-audio-3", {"mode": "text-to-audio", "init_audio": "CLIP"}, "init_audio",
     "init_audio is not taken in mode 'text-to-audio' (given as mode=): leave it out, or give mode= one of "
     "['audio-to-audio', 'inpaint']"),
    ("mask_start after mask_end", "stable-audio-3", {"init_audio": "CLIP", "mask_start": 9, "mask_end": 8},
     "mask_start", "mask_start (9) must be less than mask_end (8)"),
    ("an empty mask", "stable-audio-2.5", {"init_audio": "CLIP", "mask_start": 4.5, "mask_end": "4.5"},
     "mask_start", "mask_start (4.5) must be less than mask_end (4.5)"),
    ("mask_end before the API's default start", "stable-audio-3", {"init_audio": "CLIP", "mask_end": 20},
     "mask_end", "mask_start (30 by the API's default) must be less than mask_end (20)"),
    ("mask_start after 2.5's default end", "stable-audio-2.5", {"init_audio": "CLIP", "mask_start": 190},
     "mask_start", "mask_start (190) must be less than mask_end (190 by the API's default)"),
    ("inpaint on Stable Audio 2", "stable-audio-2", {"mode": "inpaint", "init_audio": "CLIP"}, "mode",
     "mode must be one of ['text-to-audio', 'audio-to-audio'] for model 'stable-audio-2', got 'inpaint'; the "
     "models that run in mode 'inpaint': model='stable-audio-2.5' or model='stable-audio-3'"),
    ("a mask on Stable Audio 2", "stable-audio-2", {"init_audio": "CLIP", "mask_end": 20}, "mask_end",
     "mask_end is a field of mode 'inpaint', which model 'stable-audio-2' does not run in (its modes: "
     "['text-to-audio', 'audio-to-audio']); the models that run in mode 'inpaint': model='stable-audio-2.5' or "
     "model='stable-audio-3'"),
    ("cfg_scale on 2.5's inpaint", "stable-audio-2.5", {"init_audio": "CLIP", "mask_start": 1, "cfg_scale": 2},
     "cfg_scale", "cfg_scale is a field of mode 'text-to-audio' or 'audio-to-audio', not of mode 'inpaint'"),
    ("a mask past 2.5's bound", "stable-audio-2.5", {"init_audio": "CLIP", "mask_start": 10, "mask_end": 200},
     "mask_end", "mask_end must be a number from 0 to 190, got 200"),
    ("init_audio missing", "stable-audio-3", {"init_audio": "MISSING"}, "init_audio", "MISSING' does not exist"),
    ("init_audio over 100 MB on Stable Audio 3", "stable-audio-3", {"init_audio": "HUGE"}, "init_audio",
     "is 100,000,001 bytes; stable-audio-3 takes at most 100 MB (100,000,000 bytes)"),
    ("init_audio over 50 MB on Stable Audio 2.5", "stable-audio-2.5", {"init_audio": "LARGE"}, "init_audio",
     "is 50,000,001 bytes; stable-audio-2.5 takes at most 50 MB (50,000,000 bytes)"),
    ("init_audio shorter than 6 s", "stable-audio-3", {"init_audio": "SHORT"}, "init_audio",
     "is 5.0 s long; stable-audio-3 takes input clips of 6 to 380 s"),
    ("init_audio longer than 190 s on Stable Audio 2", "stable-audio-2", {"init_audio": "LONG"}, "init_audio",
     "is 200.0 s long; stable-audio-2 takes input clips of 6 to 190 s"),
    ("init_audio not audio", "stable-audio-2.5", {"init_audio": "TEXT", "strength": 0.2}, "init_audio",
     "is not mp3 or wav audio"),
]  # fmt: skip


@pytest.mark.parametrize(("case", "model", "params", "field", "message"), BAD, ids=[b[0] for b in BAD])
def test_stability_bad_input_names_the_field_and_what_is_allowed(
    tmp_path: Path, case: str, model: str, params: dict, field: str, message: str
) -> None:
    files = {
        "CLIP": write_wav(tmp_path / "clip.wav", EIGHT_SECONDS),
        "SHORT": write_wav(tmp_path / "short.wav", 5 * 8000),
        "LONG": write_wav(tmp_path / "long.wav", 200 * 8000),
        "LARGE": sparse_wav(tmp_path / "large.wav", 50_000_001),
        "MISSING": tmp_path / "MISSING",
        "HUGE": sparse_wav(tmp_path / "huge.wav", 100_000_001),
        "TEXT": tmp_path / "notes.wav",
    }
    files["TEXT"].write_text("not audio")
    params = {"prompt": "x", **params}
    if params.get("init_audio") in files:
        params["init_audio"] = str(files[params["init_audio"]])
    with pytest.raises(StableAudioValidationError) as caught:
        GenerationRequest.build(model, **params)
    assert caught.value.field == field, case
    assert message in str(caught.value), case


def test_field_errors_come_before_the_input_clip_is_read(tmp_path: Path) -> None:
    # A missing clip and a bad steps: the cheap check answers, nothing is read from storage first.
    with pytest.raises(StableAudioValidationError) as caught:
        GenerationRequest.build(
            "stable-audio-3", prompt="x", steps=99, init_audio=str(tmp_path / "absent.wav")
        )
    assert caught.value.field == "steps"

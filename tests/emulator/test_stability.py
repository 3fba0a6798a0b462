"""The emulator's Stability routes over real HTTP: answers, validation, the three modes' audio."""

from __future__ import annotations

import base64
import hashlib
import math
import struct
from array import array
from typing import TYPE_CHECKING, Any

import pytest
import requests

from airflow_provider_stableaudio.emulator import EmulatorServer, synthesize_wav
from tests.emulator.stability_helpers import (
    BALANCE,
    KEY,
    RATE,
    RESULTS,
    SUBMIT,
    SYNC,
    error,
    get,
    make_wav,
    pcm,
    post,
    result,
    stability_ledger,
    submit,
)

if TYPE_CHECKING:
    pass

INPUT = synthesize_wav("last week's clip", 6)  # 44.1 kHz stereo, 6 s: the shortest input allowed


@pytest.fixture(autouse=True)
def _clean(server: EmulatorServer) -> None:
    server.clear_faults()
    server.clear_variants()
    server.reset()
    server.set_generation_seconds(0)


def sync(
    server: EmulatorServer, mode: str = "text-to-audio", audio: bytes | None = None, **fields: Any
) -> bytes:
    body = {"prompt": "calm piano", "duration": 6, "seed": 7, "output_format": "wav", **fields}
    response = post(server, SYNC + mode, body, audio)
    assert response.status_code == 200, response.text
    return response.content


# --- the asynchronous model: submit, then results ---------------------------------------------


def test_submit_answers_202_with_an_id_then_in_progress_then_the_audio(server: EmulatorServer) -> None:
    server.set_generation_seconds(30)
    response = post(
        server,
        SUBMIT + "text-to-audio",
        {"model": "stable-audio-3", "prompt": "rain", "duration": 3, "output_format": "wav"},
    )
    assert response.status_code == 202
    (generation_id,) = response.json().values()
    assert len(generation_id) == 64
    assert int(generation_id, 16) >= 0
    pending = result(server, generation_id)
    assert (pending.status_code, pending.json()) == (202, {"id": generation_id, "status": "in-progress"})
    server.set_generation_seconds(0)
    done = result(server, generation_id)
    assert done.status_code == 200
    assert done.headers["Content-Type"] == "audio/wav"
    assert done.headers["finish-reason"] == "SUCCESS"
    assert 1 <= int(done.headers["seed"]) <= 4294967294  # seed 0 (the default) draws one
    channels, rate, samples = pcm(done.content)
    assert (channels, rate, len(samples)) == (2, RATE, 3 * RATE * 2)
    assert max(samples) > 8000  # audible, not silence


def test_unknown_result_id_is_404(server: EmulatorServer) -> None:
    assert "id:" in error(result(server, "0" * 64), 404, "generation_not_found")[0]


def test_json_accept_gives_base64_audio_finish_reason_and_seed(server: EmulatorServer) -> None:
    generation_id = submit(server, seed=99)
    body = result(server, generation_id, accept="application/json").json()
    assert (body["finish_reason"], body["seed"]) == ("SUCCESS", 99)
    audio = base64.b64decode(body["audio"])
    assert audio == result(server, generation_id, accept="audio/*").content


def test_same_prompt_and_seed_same_audio_other_seed_other_audio(server: EmulatorServer) -> None:
    first, again, other = (submit(server, seed=seed) for seed in (5, 5, 6))
    assert result(server, first).content == result(server, again).content
    assert result(server, first).content != result(server, other).content


# --- the synchronous models -------------------------------------------------------------------


@pytest.mark.parametrize("model", ["stable-audio-2.5", "stable-audio-2"])
def test_sync_models_answer_200_with_the_audio(server: EmulatorServer, model: str) -> None:
    server.set_generation_seconds(0.3)
    response = post(
        server,
        SYNC + "text-to-audio",
        {"model": model, "prompt": "rain", "duration": 2, "seed": 3, "output_format": "wav"},
    )
    assert response.status_code == 200
    assert response.elapsed.total_seconds() >= 0.3  # the call itself is the wait
    assert (response.headers["finish-reason"], response.headers["seed"]) == ("SUCCESS", "3")
    assert len(pcm(response.content)[2]) == 2 * RATE * 2
    (generation,) = stability_ledger(server)["generations"]
    assert (generation["model"], generation["asynchronous"], generation["status"]) == (
        model,
        False,
        "complete",
    )
    error(result(server, generation["id"]), 404)  # a synchronous generation has no result to fetch


def test_default_output_is_a_valid_mpeg_stream_naming_its_wav(server: EmulatorServer) -> None:
    response = post(server, SYNC + "text-to-audio", {"prompt": "rain", "duration": 2.5, "seed": 4})
    assert response.headers["Content-Type"] == "audio/mpeg"
    mp3 = response.content
    assert mp3[:5] == b"ID3\x04\x00"
    size = sum(b << (7 * (3 - i)) for i, b in enumerate(mp3[6:10]))  # syncsafe
    tag, stream = mp3[10 : 10 + size], mp3[10 + size :]
    assert tag[:4] == b"TXXX"
    description, value = tag[11:].split(b"\x00")
    wav = sync(server, prompt="rain", duration=2.5, seed=4)
    assert (description, value.decode()) == (b"emulator-wav-sha256", hashlib.sha256(wav).hexdigest())
    frames = math.ceil(round(2.5 * RATE) / 1152)
    assert len(stream) == frames * 417
    for offset in range(0, len(stream), 417):  # every frame: MPEG-1 Layer III, 128 kbit/s, 44.1 kHz
        assert stream[offset : offset + 4] == b"\xff\xfb\x90\x04"
    assert struct.unpack(">I", stream[:4])[0] >> 21 == 0x7FF  # frame sync


# --- audio-to-audio and inpaint derive from the input -----------------------------------------


@pytest.mark.parametrize("strength", [0.01, 0.5, 1.0])
def test_audio_to_audio_mixes_the_input_with_the_prompts_tones(
    server: EmulatorServer, strength: float
) -> None:
    tones = pcm(sync(server, prompt="brass"))[2]
    mixed = pcm(sync(server, "audio-to-audio", INPUT, prompt="brass", strength=strength))[2]
    source = pcm(INPUT)[2]
    k = round(strength * 512)
    assert mixed == array("h", [(a * (1024 - k) + b * k) >> 10 for a, b in zip(source, tones, strict=True)])
    generation = stability_ledger(server)["generations"][1]
    assert generation["derived_from_input"] is True
    assert generation["input_sha256"] == hashlib.sha256(INPUT).hexdigest()


def test_audio_to_audio_default_strength_keeps_half_the_input(server: EmulatorServer) -> None:
    tones = pcm(sync(server, prompt="brass"))[2]
    mixed = pcm(sync(server, "audio-to-audio", INPUT, prompt="brass"))[2]
    source = pcm(INPUT)[2]
    assert mixed == array("h", [(a * 512 + b * 512) >> 10 for a, b in zip(source, tones, strict=True)])


def test_inpaint_replaces_the_masked_span_and_keeps_the_rest(server: EmulatorServer) -> None:
    tones = pcm(sync(server, prompt="drum fill"))[2]
    out = pcm(sync(server, "inpaint", INPUT, prompt="drum fill", mask_start=1.5, mask_end=4))[2]
    source = pcm(INPUT)[2]
    start, end = int(1.5 * RATE) * 2, 4 * RATE * 2
    assert out[:start] == source[:start]
    assert out[end:] == source[end:]
    assert out[start:end] == tones[start:end]
    assert out[start:end] != source[start:end]


def test_inpaint_on_stable_audio_3_too(server: EmulatorServer) -> None:
    generation_id = submit(server, "inpaint", INPUT, duration=6, mask_start=0, mask_end=1, seed=1)
    out = pcm(result(server, generation_id).content)[2]
    assert out[RATE * 2 :] == pcm(INPUT)[2][RATE * 2 :]


def test_input_is_cut_or_padded_with_silence_to_the_duration(server: EmulatorServer) -> None:
    source = pcm(INPUT)[2]
    longer = pcm(sync(server, "inpaint", INPUT, duration=8, mask_start=0, mask_end=1))[2]
    assert len(longer) == 8 * RATE * 2
    assert longer[RATE * 2 : 6 * RATE * 2] == source[RATE * 2 :]
    assert set(longer[6 * RATE * 2 :]) == {0}
    shorter = pcm(sync(server, "inpaint", INPUT, duration=3, mask_start=0, mask_end=1))[2]
    assert shorter[RATE * 2 :] == source[RATE * 2 : 3 * RATE * 2]


def test_mono_input_at_another_rate_is_converted(server: EmulatorServer) -> None:
    mono = array("h", [(i * 37) % 20000 - 10000 for i in range(6 * 22050)])
    out = pcm(sync(server, "inpaint", make_wav(mono, channels=1, rate=22050), mask_start=5, mask_end=6))[2]
    left, right = out[0 : 10 * RATE : 2], out[1 : 10 * RATE : 2]  # the 5 s before the mask
    assert left == right
    assert left == array("h", [mono[i // 2] for i in range(5 * RATE)])


def test_mp3_input_falls_back_to_the_prompts_tones(server: EmulatorServer) -> None:
    mp3_input = sync(server, prompt="source", output_format="mp3")
    out = sync(server, "audio-to-audio", mp3_input, prompt="brass")
    assert out == sync(server, prompt="brass")
    entry = stability_ledger(server)["generations"][1]
    assert (entry["mode"], entry["derived_from_input"], entry["input_size"]) == (
        "audio-to-audio",
        False,
        len(mp3_input),
    )


# --- validation -------------------------------------------------------------------------------

LONG = "x" * 10001
CASES = [
    # (path, fields, audio, the field the first error names)
    (SUBMIT + "text-to-audio", {"duration": 381}, None, "duration"),
    (SUBMIT + "text-to-audio", {"duration": 0}, None, "duration"),
    (SYNC + "text-to-audio", {"duration": 191}, None, "duration"),
    (SUBMIT + "text-to-audio", {"steps": 3}, None, "steps"),
    (SUBMIT + "text-to-audio", {"steps": 9}, None, "steps"),
    (SUBMIT + "text-to-audio", {"steps": 6.5}, None, "steps"),
    (SYNC + "text-to-audio", {"model": "stable-audio-2", "steps": 8}, None, "steps"),
    (SUBMIT + "text-to-audio", {"seed": -1}, None, "seed"),
    (SUBMIT + "text-to-audio", {"seed": 4294967295}, None, "seed"),
    (SUBMIT + "text-to-audio", {"cfg_scale": 25.5}, None, "cfg_scale"),
    (SUBMIT + "text-to-audio", {"cfg_scale": "strong"}, None, "cfg_scale"),
    (SYNC + "inpaint", {"cfg_scale": 7}, "wav6", "cfg_scale"),  # not a field of 2.5's inpaint
    (SUBMIT + "text-to-audio", {"output_format": "ogg"}, None, "output_format"),
    (SUBMIT + "text-to-audio", {"prompt": ""}, None, "prompt"),
    (SUBMIT + "text-to-audio", {"prompt": LONG}, None, "prompt"),
    (SUBMIT + "text-to-audio", {"prompt": None}, None, "prompt"),
    (SUBMIT + "text-to-audio", {"model": "stable-audio-2.5"}, None, "model"),
    (SYNC + "text-to-audio", {"model": "stable-audio-3"}, None, "model"),
    (SUBMIT + "text-to-audio", {"output-format": "wav"}, None, "output-format"),
    (SUBMIT + "text-to-audio", {"strength": 0.5}, None, "strength"),
    (SUBMIT + "text-to-audio", {}, "wav6", "audio"),
    (SUBMIT + "audio-to-audio", {}, None, "audio"),
    (SYNC + "audio-to-audio", {"strength": 0}, "wav6", "strength"),
    (SYNC + "audio-to-audio", {"strength": 1.01}, "wav6", "strength"),
    (SYNC + "audio-to-audio", {}, "text", "audio"),
    (SYNC + "audio-to-audio", {}, "wav3", "audio"),
    (SYNC + "inpaint", {"mask_start": 4, "mask_end": 4}, "wav6", "mask_end"),
    (SYNC + "inpaint", {"mask_end": 191}, "wav6", "mask_end"),
    (SUBMIT + "inpaint", {"mask_start": -1}, "wav6", "mask_start"),
    (SYNC + "inpaint", {"mask_start": 1}, None, "audio"),
]
AUDIO = {"wav6": INPUT, "wav3": synthesize_wav("short", 3), "text": b"just some text, not audio"}


@pytest.mark.parametrize(("path", "fields", "audio", "field"), CASES)
def test_invalid_fields_are_400_naming_the_field(
    server: EmulatorServer, path: str, fields: dict[str, Any], audio: str | None, field: str
) -> None:
    body = {k: v for k, v in {"prompt": "calm", "duration": 6, **fields}.items() if v is not None}
    errors = error(post(server, path, body, AUDIO.get(audio or "")), 400, "bad_request")
    assert errors[0].startswith(f"{field}: "), errors
    assert stability_ledger(server)["submits"] == {}


def test_every_problem_is_reported(server: EmulatorServer) -> None:
    errors = error(
        post(server, SYNC + "inpaint", {"prompt": "x", "duration": 500, "steps": 1, "bogus": 1}), 400
    )
    assert [message.split(":")[0] for message in errors] == ["duration", "steps", "bogus", "audio"]


def test_mask_bounds_follow_the_model(server: EmulatorServer) -> None:
    generation_id = submit(server, "inpaint", INPUT, duration=6, mask_start=0, mask_end=380)
    assert result(server, generation_id).status_code == 200


@pytest.mark.parametrize(
    "body",
    [
        {"data": "prompt=calm"},  # urlencoded, not multipart
        {"data": b'{"prompt": "calm"}', "headers": {"Content-Type": "application/json"}},
        {"data": b"--x\r\nno end", "headers": {"Content-Type": "multipart/form-data; boundary=x"}},
        {"data": b"", "headers": {"Content-Type": "multipart/form-data"}},  # no boundary
    ],
)
def test_a_body_that_is_not_multipart_form_data_is_400(server: EmulatorServer, body: dict[str, Any]) -> None:
    extra = body.pop("headers", {})
    response = requests.post(
        server.base_url + SUBMIT + "text-to-audio",
        headers={"Authorization": f"Bearer {KEY}", **extra},
        timeout=10,
        **body,
    )
    assert error(response, 400, "bad_request")[0].startswith(("content-type: ", "body: "))


def test_a_field_given_twice_is_400(server: EmulatorServer) -> None:
    files = [("prompt", (None, "a")), ("prompt", (None, "b"))]
    response = requests.post(
        server.base_url + SUBMIT + "text-to-audio",
        files=files,
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=10,
    )
    assert error(response, 400)[0] == "prompt: given more than once"


def test_unknown_mode_or_path_is_a_stability_404(server: EmulatorServer) -> None:
    assert "mode" in error(post(server, SUBMIT + "remix", {"prompt": "x"}), 404, "not_found")[0]
    error(get(server, "/v2beta/audio/nothing-here"), 404, "not_found")
    error(get(server, SUBMIT + "text-to-audio"), 404, "not_found")  # GET on a POST route


# --- refusals: key, moderation, size ----------------------------------------------------------


@pytest.mark.parametrize("key", [None, "wrong-key", ""])
@pytest.mark.parametrize("path", [SUBMIT + "text-to-audio", SYNC + "inpaint", RESULTS + "0" * 64, BALANCE])
def test_missing_or_wrong_key_is_401(server: EmulatorServer, key: str | None, path: str) -> None:
    if path.startswith(RESULTS) or path == BALANCE:
        response = get(server, path, key=key)
    else:
        response = post(server, path, {"prompt": "calm"}, key=key)
    error(response, 401, "unauthorized")
    assert "wrong-key" not in response.text
    assert stability_ledger(server)["submit_count"] == 0


def test_moderation_marker_is_403_and_creates_nothing(server: EmulatorServer) -> None:
    for path in (SUBMIT + "text-to-audio", SYNC + "text-to-audio"):
        response = post(server, path, {"prompt": "a [emulator:moderate] tune"})
        assert "content moderation" in error(response, 403, "content_moderation")[0]
    assert stability_ledger(server)["submits"] == {}


def test_filtered_marker_finishes_content_filtered_with_silence(server: EmulatorServer) -> None:
    generation_id = submit(server, prompt="[emulator:filtered] tune")
    done = result(server, generation_id)
    assert done.headers["finish-reason"] == "CONTENT_FILTERED"
    assert set(pcm(done.content)[2]) == {0}
    body = post(
        server,
        SYNC + "text-to-audio",
        {"prompt": "[emulator:filtered]", "duration": 1},
        accept="application/json",
    ).json()
    assert body["finish_reason"] == "CONTENT_FILTERED"
    assert [g["finish_reason"] for g in stability_ledger(server)["generations"]] == ["CONTENT_FILTERED"] * 2


def test_audio_over_50_mib_is_413(server: EmulatorServer) -> None:
    too_big = INPUT[:44] + bytes(50 * 1024 * 1024 + 1 - 44)
    response = post(server, SYNC + "audio-to-audio", {"prompt": "x"}, too_big, timeout=60)
    assert error(response, 413, "payload_too_large")[0].startswith("audio: ")
    assert stability_ledger(server)["submit_count"] == 0


def test_aiml_routes_keep_their_1_mib_body_limit(server: EmulatorServer) -> None:
    response = requests.post(
        server.base_url + "/v2/generate/audio",
        data=b"{" + b" " * (1024 * 1024 + 1),
        headers={"Authorization": f"Bearer {KEY}"},
        timeout=10,
    )
    assert response.status_code == 413
    assert set(response.json()) == {"message", "path", "requestId", "statusCode", "timestamp"}


def test_balance_reports_the_credits_left(server: EmulatorServer) -> None:
    assert get(server, BALANCE).json() == {"credits": 1000.0}
    submit(server)
    sync(server, duration=1)
    sync(server, duration=1, prompt="[emulator:filtered]")  # not charged
    assert get(server, BALANCE).json() == {"credits": 1000.0 - 26 - 20}

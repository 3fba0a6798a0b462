"""The emulator's Stability routes follow Stability's OpenAPI document (``stability-audio-contract.md``).

Each test names one documented behaviour; all traffic is to the emulator on 127.0.0.1.
"""

from __future__ import annotations

import math
import struct
from array import array
from typing import TYPE_CHECKING, Any

import pytest
import requests

from airflow_provider_stableaudio.emulator import (
    EmulatorServer,
    VariantConfig,
    synthesize_wav,
)
from airflow_provider_stableaudio.emulator.__main__ import _parse_args
from tests.emulator.stability_helpers import (
    BALANCE,
    RESULTS,
    SUBMIT,
    SYNC,
    error,
    form,
    get,
    headers,
    make_wav,
    pcm,
    post,
    result,
    stability_ledger,
    submit,
)

if TYPE_CHECKING:
    pass

INPUT = synthesize_wav("input", 6)  # 44.1 kHz stereo 16-bit, 6 s
MB = 10**6
# MPEG Layer III frame headers (no CRC, no padding): (header, frame bytes, samples per frame, rate).
MPEG1_128K = (b"\xff\xfb\x90\x00", 417, 1152, 44100)  # 144 * 128000 // 44100
MPEG2_64K = (b"\xff\xf3\x80\x00", 208, 576, 22050)  # 72 * 64000 // 22050


@pytest.fixture(autouse=True)
def _clean(server: EmulatorServer) -> None:
    server.clear_faults()
    server.clear_variants()
    server.reset()
    server.set_generation_seconds(0)


def mp3(seconds: float, frame: tuple[bytes, int, int, int] = MPEG1_128K) -> bytes:
    """An MPEG Layer III stream of silent frames covering ``seconds``, behind an empty ID3v2.4 tag."""
    header, size, samples, rate = frame
    count = math.ceil(seconds * rate / samples)
    return b"ID3\x04\x00\x00\x00\x00\x00\x00" + (header + bytes(size - 4)) * count


def padded_wav(total: int) -> bytes:
    """:data:`INPUT` (6 s) followed by a ``junk`` chunk, ``total`` bytes in all."""
    junk = total - len(INPUT) - 8
    riff_size = struct.pack("<I", total - 8)
    return INPUT[:4] + riff_size + INPUT[8:] + b"junk" + struct.pack("<I", junk) + bytes(junk)


def silent_wav(seconds: float) -> bytes:
    """A 44.1 kHz mono 16-bit WAV of silence (decoded without resampling: cheap at any length)."""
    return make_wav(array("h", bytes(2 * round(seconds * 44100))), channels=1)


def body(**fields: Any) -> dict[str, Any]:
    return {"prompt": "calm", "duration": 1, "output_format": "wav", **fields}


def only_generation(server: EmulatorServer) -> dict[str, Any]:
    (generation,) = stability_ledger(server)["generations"]
    return generation


def assert_nothing_created(server: EmulatorServer) -> None:
    ledger = stability_ledger(server)
    assert (ledger["submit_count"], ledger["credits_used"], ledger["generations"]) == (0, 0, [])


# --- 1. stable-audio-2/inpaint: Stable Audio 2.5 only, no model, no cfg_scale -------------------


@pytest.mark.parametrize("model", ["stable-audio-2.5", "stable-audio-2", "stable-audio-3", ""])
def test_sa2_inpaint_refuses_any_model_field(server: EmulatorServer, model: str) -> None:
    response = post(server, SYNC + "inpaint", body(model=model, mask_start=1, mask_end=2), INPUT)
    errors = error(response, 400, "bad_request")
    assert errors[0].startswith("model: "), errors
    assert_nothing_created(server)


def test_sa2_inpaint_refuses_cfg_scale(server: EmulatorServer) -> None:
    response = post(server, SYNC + "inpaint", body(cfg_scale=1, mask_start=1, mask_end=2), INPUT)
    assert error(response, 400, "bad_request")[0].startswith("cfg_scale: ")
    assert_nothing_created(server)


def test_sa2_inpaint_is_sa2_5_with_steps_4_to_8_and_mask_defaults_30_and_190(server: EmulatorServer) -> None:
    response = post(server, SYNC + "inpaint", body(duration=6), INPUT)
    assert response.status_code == 200, response.text
    generation = only_generation(server)
    assert (generation["model"], generation["steps"]) == ("stable-audio-2.5", 8)
    assert (generation["mask_start"], generation["mask_end"]) == (30, 190)
    assert "cfg_scale" not in generation
    for steps, status in ((4, 200), (8, 200), (3, 400), (9, 400), (50, 400)):
        response = post(server, SYNC + "inpaint", body(steps=steps, mask_start=0, mask_end=190), INPUT)
        assert response.status_code == status, (steps, response.text)
    assert error(post(server, SYNC + "inpaint", body(mask_end=190.5), INPUT), 400)[0].startswith("mask_end: ")


# --- 2. input audio: lengths and sizes per family ----------------------------------------------


def test_sa3_defaults_duration_190_and_mask_30_to_380(server: EmulatorServer) -> None:
    response = post(server, SUBMIT + "inpaint", {"prompt": "calm", "output_format": "wav"}, INPUT)
    generation_id = response.json()["id"]
    generation = only_generation(server)
    assert (generation["duration"], generation["mask_start"], generation["mask_end"]) == (190, 30, 380)
    assert len(pcm(result(server, generation_id).content)[2]) == 190 * 44100 * 2
    submit(server, "inpaint", INPUT, duration=6, mask_start=379.5, mask_end=380)
    response = post(server, SUBMIT + "inpaint", body(mask_end=380.5), INPUT)
    assert error(response, 400)[0].startswith("mask_end: ")


@pytest.mark.parametrize(
    ("path", "seconds", "accepted"),
    [
        (SUBMIT, 380, True),
        (SUBMIT, 380.5, False),
        (SUBMIT, 5.9, False),
        (SYNC, 190, True),
        (SYNC, 190.5, False),
        (SYNC, 5.9, False),
    ],
)
def test_input_wav_length_is_6_to_380_s_on_sa3_and_6_to_190_s_on_sa2(
    server: EmulatorServer, path: str, seconds: float, accepted: bool
) -> None:
    response = post(server, path + "audio-to-audio", body(), silent_wav(seconds), timeout=60)
    if accepted:
        assert response.status_code in (200, 202), response.text
    else:
        assert error(response, 400, "bad_request")[0].startswith("audio: must last from 6 to ")
        assert_nothing_created(server)


@pytest.mark.parametrize(
    ("path", "seconds", "frame", "accepted"),
    [
        (SUBMIT, 380, MPEG1_128K, True),
        (SUBMIT, 381, MPEG1_128K, False),
        (SYNC, 190, MPEG1_128K, True),  # whole frames overshoot 190 s by a fraction of one: accepted
        (SYNC, 191, MPEG1_128K, False),
        (SYNC, 6, MPEG1_128K, True),
        (SYNC, 5.5, MPEG1_128K, False),
        (SYNC, 191, MPEG2_64K, False),  # MPEG-2: 576 samples a frame at 22.05 kHz
        (SYNC, 7, MPEG2_64K, True),
        (SYNC, 5, MPEG2_64K, False),
    ],
)
def test_input_mp3_length_is_measured_from_its_frames(
    server: EmulatorServer, path: str, seconds: float, frame: tuple[bytes, int, int, int], accepted: bool
) -> None:
    response = post(server, path + "audio-to-audio", body(), mp3(seconds, frame), timeout=60)
    if accepted:
        assert response.status_code in (200, 202), response.text
        assert only_generation(server)["input_size"] == len(mp3(seconds, frame))
    else:
        assert error(response, 400, "bad_request")[0].startswith("audio: must last from 6 to ")
        assert_nothing_created(server)


def test_input_mp3_that_cannot_be_measured_is_accepted(server: EmulatorServer) -> None:
    layer2 = b"ID3\x04\x00\x00\x00\x00\x00\x00" + (b"\xff\xfd\x90\x00" + bytes(413)) * 3  # Layer II
    response = post(server, SYNC + "audio-to-audio", body(), layer2)
    assert response.status_code == 200, response.text


def test_sa2_input_audio_over_50_mb_is_413(server: EmulatorServer) -> None:
    response = post(server, SYNC + "audio-to-audio", body(), padded_wav(50 * MB), timeout=60)
    assert response.status_code == 200, response.text  # 50 MB is 50 * 10**6 bytes
    response = post(server, SYNC + "audio-to-audio", body(), padded_wav(50 * MB + 1), timeout=60)
    errors = error(response, 413, "payload_too_large")
    assert errors[0].startswith("audio: ")
    assert stability_ledger(server)["submit_count"] == 1


def test_sa3_admits_a_request_of_100_mb_and_refuses_one_byte_more(server: EmulatorServer) -> None:
    def prepared(audio_size: int) -> requests.PreparedRequest:
        files = form(body(), padded_wav(audio_size))
        url = server.base_url + SUBMIT + "audio-to-audio"
        return requests.Request("POST", url, files=files, headers=headers()).prepare()

    overhead = len(prepared(len(INPUT) + 8).body or b"") - (len(INPUT) + 8)
    with requests.Session() as session:
        exact = prepared(100 * MB - overhead)
        assert len(exact.body or b"") == 100 * MB
        accepted = session.send(exact, timeout=60)
        assert accepted.status_code == 202, accepted.text
        over = session.send(prepared(100 * MB - overhead + 1), timeout=60)
    assert error(over, 413, "payload_too_large")
    assert stability_ledger(server)["submit_count"] == 1


# --- 3. numbers as published --------------------------------------------------------------------


def test_duration_mask_cfg_scale_and_strength_take_fractional_numbers(server: EmulatorServer) -> None:
    submit(server, "audio-to-audio", INPUT, duration=12.5, strength=0.25, cfg_scale=3.5)
    submit(server, "inpaint", INPUT, duration=6.5, mask_start=1.5, mask_end=4.25)
    response = post(server, SYNC + "text-to-audio", body(duration=1.5, cfg_scale=12.5))
    assert response.status_code == 200, response.text
    first, second, third = stability_ledger(server)["generations"]
    assert (first["duration"], first["strength"], first["cfg_scale"]) == (12.5, 0.25, 3.5)
    assert (second["duration"], second["mask_start"], second["mask_end"]) == (6.5, 1.5, 4.25)
    assert (third["model"], third["duration"], third["cfg_scale"]) == ("stable-audio-2.5", 1.5, 12.5)


@pytest.mark.parametrize(
    ("path", "model", "strength", "accepted"),
    [
        (SUBMIT, "stable-audio-3", 0, True),
        (SYNC, "stable-audio-2", 0, True),
        (SYNC, "stable-audio-2.5", 0, False),
        (SYNC, "stable-audio-2.5", 0.005, False),
        (SYNC, "stable-audio-2.5", 0.01, True),
        (SUBMIT, "stable-audio-3", 1.5, False),
    ],
)
def test_strength_is_0_to_1_on_sa3_and_sa2_and_0_01_to_1_on_sa2_5(
    server: EmulatorServer, path: str, model: str, strength: float, accepted: bool
) -> None:
    fields = body(model=model, strength=strength) | ({"steps": 50} if model == "stable-audio-2" else {})
    response = post(server, path + "audio-to-audio", fields, INPUT)
    if accepted:
        assert response.status_code in (200, 202), response.text
        assert only_generation(server)["strength"] == strength
    else:
        assert error(response, 400, "bad_request")[0].startswith("strength: ")


def test_strength_0_keeps_the_input_unchanged(server: EmulatorServer) -> None:
    fields = body(model="stable-audio-2", duration=6, strength=0)
    out = post(server, SYNC + "audio-to-audio", fields, INPUT)
    assert pcm(out.content)[2] == pcm(INPUT)[2]


@pytest.mark.parametrize(
    ("path", "model", "default"),
    [(SUBMIT, "stable-audio-3", 1), (SYNC, "stable-audio-2.5", 1), (SYNC, "stable-audio-2", 7)],
)
@pytest.mark.parametrize("mode", ["text-to-audio", "audio-to-audio"])
def test_cfg_scale_is_1_to_25_with_the_models_default(
    server: EmulatorServer, path: str, model: str, default: float, mode: str
) -> None:
    audio = INPUT if mode == "audio-to-audio" else None
    response = post(server, path + mode, body(model=model), audio)
    assert response.status_code in (200, 202), response.text
    assert only_generation(server)["cfg_scale"] == default
    for value, status in ((25, (200, 202)), (1, (200, 202)), (25.5, (400,)), (0.5, (400,))):
        response = post(server, path + mode, body(model=model, cfg_scale=value), audio)
        assert response.status_code in status, (value, response.text)


# --- 4. content moderation of results -----------------------------------------------------------


def test_moderate_result_marker_accepts_the_submit_then_refuses_the_result(server: EmulatorServer) -> None:
    server.set_generation_seconds(30)
    generation_id = submit(server, prompt="a [emulator:moderate-result] tune")
    assert result(server, generation_id).status_code == 202  # still generating
    server.set_generation_seconds(0)
    for _ in range(2):
        response = result(server, generation_id)
        assert "content moderation" in error(response, 403, "content_moderation")[0]
    generation = only_generation(server)
    assert (generation["moderated"], generation["finish_reason"], generation["served"]) == (True, None, 0)
    ledger = stability_ledger(server)
    assert (ledger["submit_count"], ledger["credits_used"], ledger["results_served"]) == (1, 0, 0)
    assert get(server, BALANCE).json() == {"credits": 1000.0}


def test_moderate_result_marker_refuses_a_synchronous_answer_after_the_generation(
    server: EmulatorServer,
) -> None:
    response = post(server, SYNC + "text-to-audio", body(prompt="[emulator:moderate-result]"))
    error(response, 403, "content_moderation")
    generation = only_generation(server)
    assert (generation["model"], generation["moderated"], generation["served"]) == (
        "stable-audio-2.5",
        True,
        0,
    )
    assert stability_ledger(server)["credits_used"] == 0


# --- 5. headers of audio answers ----------------------------------------------------------------


def test_audio_answers_carry_finish_reason_seed_and_a_fresh_x_request_id(server: EmulatorServer) -> None:
    generation_id = submit(server, seed=42)
    first, second = result(server, generation_id), result(server, generation_id)
    synchronous = post(server, SYNC + "text-to-audio", body(seed=43))
    as_json = result(server, generation_id, accept="application/json")
    ids = set()
    for response, seed in ((first, "42"), (second, "42"), (synchronous, "43")):
        assert response.status_code == 200
        assert (response.headers["finish-reason"], response.headers["seed"]) == ("SUCCESS", seed)
        ids.add(response.headers["x-request-id"])
    ids.add(as_json.headers["x-request-id"])
    assert len(ids) == 4
    assert all(len(request_id) == 32 and int(request_id, 16) >= 0 for request_id in ids)


def test_x_request_id_stays_when_the_audio_headers_are_off(server: EmulatorServer) -> None:
    server.set_variants(stability_audio_headers=False)
    response = result(server, submit(server))
    assert "finish-reason" not in response.headers
    assert len(response.headers["x-request-id"]) == 32


def test_error_answers_carry_their_envelope_id_as_x_request_id(server: EmulatorServer) -> None:
    for response in (
        post(server, SUBMIT + "text-to-audio", body(duration=0)),
        get(server, BALANCE, key="wrong"),
        result(server, "f" * 64),
    ):
        assert response.status_code >= 400
        assert response.headers["x-request-id"] == response.json()["id"]
    accepted = post(server, SUBMIT + "text-to-audio", body())
    assert accepted.headers["x-request-id"] != accepted.json()["id"]  # a request id, not the generation's


# --- 6. 404 generation_not_found ----------------------------------------------------------------


def test_unknown_expired_or_served_once_results_are_generation_not_found(server: EmulatorServer) -> None:
    error(result(server, "0" * 64), 404, "generation_not_found")
    server.set_variants(stability_results_once=True)
    served = submit(server)
    assert result(server, served).status_code == 200
    error(result(server, served), 404, "generation_not_found")
    server.set_variants(stability_result_ttl=0)
    error(result(server, submit(server)), 404, "generation_not_found")
    post(server, SYNC + "text-to-audio", body())
    synchronous = stability_ledger(server)["generations"][-1]["id"]
    error(result(server, synchronous), 404, "generation_not_found")


# --- 7. an account without Stable Audio 3 ------------------------------------------------------


@pytest.mark.parametrize("mode", ["text-to-audio", "audio-to-audio", "inpaint"])
def test_sa3_access_denied_refuses_every_sa3_submit_with_403_permission_denied(
    server: EmulatorServer, mode: str
) -> None:
    server.set_variants(stability_sa3_access_denied=True)
    response = post(server, SUBMIT + mode, body(), None if mode == "text-to-audio" else INPUT)
    (message,) = error(response, 403, "permission_denied")
    assert "Stable Audio 3" in message
    assert "allow-access-stable-audio-3-api" in message
    assert_nothing_created(server)
    error(post(server, SUBMIT + mode, body(), key="wrong"), 401, "unauthorized")  # the key comes first


def test_sa3_access_denied_leaves_sa2_and_existing_results_alone(server: EmulatorServer) -> None:
    earlier = submit(server)
    server.set_variants(stability_sa3_access_denied=True)
    assert post(server, SYNC + "text-to-audio", body()).status_code == 200
    assert (
        post(server, SYNC + "inpaint", body(duration=6, mask_start=0, mask_end=1), INPUT).status_code == 200
    )
    assert result(server, earlier).status_code == 200
    assert stability_ledger(server)["submits"] == {
        "stable-audio-3": {"text-to-audio": 1},
        "stable-audio-2.5": {"text-to-audio": 1, "inpaint": 1},
    }


def test_sa3_access_denied_through_the_config_route_and_the_cli(server: EmulatorServer) -> None:
    url = server.base_url + "/_emulator/config"
    answer = requests.post(url, json={"stability_sa3_access_denied": True}, timeout=10).json()
    assert answer["stability_sa3_access_denied"] is True
    error(post(server, SUBMIT + "text-to-audio", body()), 403, "permission_denied")
    assert requests.post(url, json={"stability_sa3_access_denied": "yes"}, timeout=10).status_code == 400
    requests.post(url, json={"clear_variants": True}, timeout=10)
    assert post(server, SUBMIT + "text-to-audio", body()).status_code == 202
    assert _parse_args(["--stability-sa3-access-denied"]).variants == VariantConfig(
        stability_sa3_access_denied=True
    )
    assert _parse_args([]).variants.stability_sa3_access_denied is False


def test_a_refused_sa3_submit_is_a_request_in_the_ledger_not_a_generation(server: EmulatorServer) -> None:
    server.set_variants(stability_sa3_access_denied=True)
    post(server, SUBMIT + "text-to-audio", body())
    requests_seen = [(r["path"], r["status"]) for r in server.ledger()["requests"]]
    assert requests_seen == [(SUBMIT + "text-to-audio", 403)]
    assert stability_ledger(server)["submits"] == {}
    error(get(server, RESULTS + "0" * 64), 404, "generation_not_found")

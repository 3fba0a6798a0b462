"""The emulator answers with each variant the API's contract allows, when asked to."""

from __future__ import annotations

import json
import urllib.parse
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_stableaudio.emulator import EmulatorServer, VariantConfig
from airflow_provider_stableaudio.emulator.__main__ import _parse_args
from tests.emulator.test_emulator import PATH, call

if TYPE_CHECKING:
    pass

BODY = {"model": "stable-audio", "prompt": "a slow cello drone", "seconds_total": 1}


@pytest.fixture(autouse=True)
def _clean(server: EmulatorServer) -> None:
    server.reset()
    server.clear_variants()
    server.set_generation_seconds(0)


def create(server: EmulatorServer) -> tuple[int, dict[str, Any]]:
    status, _, raw = call(server, "POST", PATH, BODY)
    return status, json.loads(raw)


def poll(server: EmulatorServer, generation_id: str) -> dict[str, Any]:
    status, _, raw = call(server, "GET", f"{PATH}?generation_id={urllib.parse.quote(generation_id)}")
    assert status == 200
    return json.loads(raw)


def test_defaults_are_the_current_schema(server: EmulatorServer) -> None:
    status, body = create(server)
    assert (status, body["status"], set(body)) == (200, "queued", {"id", "status", "meta"})
    done = poll(server, body["id"])
    assert done["status"] == "completed"
    assert done["audio_file"]["content_type"] == "audio/wav"
    assert "?" not in done["audio_file"]["url"]
    # 252 credits per step, 100 steps: an integer, as in the real API's examples.
    assert body["meta"]["usage"]["credits_used"] == done["meta"]["usage"]["credits_used"] == 25200
    assert isinstance(done["meta"]["usage"]["credits_used"], int)


def test_create_answers_201_with_generation_id(server: EmulatorServer) -> None:
    server.set_variants(create_status=201, id_field="generation_id")
    status, body = create(server)
    assert status == 201
    assert "id" not in body
    generation_id = body["generation_id"]
    assert poll(server, generation_id)["generation_id"] == generation_id


@pytest.mark.parametrize("statuses", [["waiting"], ["active"], ["processing"], ["waiting", "active"]])
def test_pending_generations_report_the_chosen_statuses(server: EmulatorServer, statuses: list[str]) -> None:
    server.set_variants(pending_statuses=statuses)
    server.set_generation_seconds(3600)
    _, body = create(server)
    assert body["status"] == statuses[0]
    assert poll(server, body["id"])["status"] == statuses[0]
    assert VariantConfig(pending_statuses=statuses).pending_status(0.5) == statuses[-1]


def test_failed_generations_can_say_failed(server: EmulatorServer) -> None:
    server.set_variants(failed_status="failed")
    assert call(server, "POST", PATH, {**BODY, "prompt": "[emulator:error] x"})[0] == 200
    generation_id = server.ledger()["generations"][0]["id"]
    failed = poll(server, generation_id)
    assert failed["status"] == "failed"
    assert failed["error"]["name"] == "GenerationError"


def test_finished_generations_can_say_complete(server: EmulatorServer) -> None:
    server.set_variants(completed_status="complete")
    _, body = create(server)
    done = poll(server, body["id"])
    assert done["status"] == "complete"
    assert server.ledger()["generations"][0]["status"] == "complete"
    audio = done["audio_file"]
    status, _, data = call(server, "GET", urllib.parse.urlsplit(audio["url"]).path, key=None)
    assert (status, len(data)) == (200, audio["file_size"])


def test_credits_used_can_be_fractional(server: EmulatorServer) -> None:
    server.set_variants(credits_per_step=0.125)
    status, _, raw = call(server, "POST", PATH, {**BODY, "steps": 100})
    assert status == 200
    assert b'"credits_used": 12.5' in raw  # a JSON number, not a string
    assert poll(server, json.loads(raw)["id"])["meta"]["usage"]["credits_used"] == 12.5


def test_octet_stream_content_type_in_the_body_and_the_download(server: EmulatorServer) -> None:
    server.set_variants(content_type="application/octet-stream")
    _, body = create(server)
    audio = poll(server, body["id"])["audio_file"]
    assert audio["content_type"] == "application/octet-stream"
    status, headers, data = call(server, "GET", urllib.parse.urlsplit(audio["url"]).path, key=None)
    assert (status, headers["Content-Type"]) == (200, "application/octet-stream")
    assert len(data) == audio["file_size"]


def test_expiring_urls_work_until_they_expire(server: EmulatorServer) -> None:
    server.set_variants(url_ttl_seconds=3600)
    _, body = create(server)
    url = urllib.parse.urlsplit(poll(server, body["id"])["audio_file"]["url"])
    assert urllib.parse.parse_qs(url.query).keys() == {"expires"}
    assert call(server, "GET", f"{url.path}?{url.query}", key=None)[0] == 200

    server.set_variants(url_ttl_seconds=0)
    url = urllib.parse.urlsplit(poll(server, body["id"])["audio_file"]["url"])
    status, _, raw = call(server, "GET", f"{url.path}?{url.query}", key=None)
    assert (status, json.loads(raw)["message"]) == (403, "Request has expired")
    assert call(server, "GET", f"{url.path}?expires=soon", key=None)[0] == 403


def test_config_endpoint_sets_validates_and_clears_variants(server: EmulatorServer) -> None:
    settings = {"create_status": 201, "pending_statuses": ["waiting", "active"], "url_ttl_seconds": 5}
    status, _, raw = call(server, "POST", "/_emulator/config", settings, key=None)
    assert status == 200
    assert {k: json.loads(raw)[k] for k in settings} == {**settings, "url_ttl_seconds": 5.0}
    assert server.variants.create_status == 201
    for bad, words in (
        ({"create_status": 202}, "create_status: must be one of 200, 201"),
        ({"pending_statuses": ["completed"]}, "pending_statuses: may contain only"),
        ({"pending_statuses": []}, "pending_statuses: must be a list of one or two statuses"),
        ({"content_type": "audio/mpeg"}, "content_type: must be one of"),
        ({"url_ttl_seconds": -1}, "url_ttl_seconds: must be a finite number >= 0 or null"),
        ({"id_field": True}, "id_field: must be one of id, generation_id"),
        ({"completed_status": "done"}, "completed_status: must be one of completed, complete"),
        ({"credits_per_step": -1}, "credits_per_step: must be a finite number >= 0"),
        ({"credits_per_step": "12.5"}, "credits_per_step: must be a finite number >= 0"),
        ({"credits_per_step": True}, "credits_per_step: must be a finite number >= 0"),
        ({"clear_variants": "yes"}, "clear_variants: must be a boolean"),
    ):
        status, _, raw = call(server, "POST", "/_emulator/config", bad, key=None)
        assert status == 400
        assert words in json.loads(raw)["message"]
    status, _, raw = call(server, "POST", "/_emulator/config", {"clear_variants": True}, key=None)
    assert json.loads(raw)["create_status"] == 200
    assert server.variants == VariantConfig()


def test_set_variants_validates(server: EmulatorServer) -> None:
    with pytest.raises(ValueError, match="failed_status: must be one of error, failed"):
        server.set_variants(failed_status="broken")
    with pytest.raises(TypeError):
        server.set_variants(nope=1)  # type: ignore[call-arg]


def test_cli_flags_set_every_variant() -> None:
    args = _parse_args(
        [
            "--create-status",
            "201",
            "--id-field",
            "generation_id",
            "--pending-statuses",
            "waiting,active",
            "--failed-status",
            "failed",
            "--content-type",
            "application/octet-stream",
            "--url-ttl-seconds",
            "60",
            "--completed-status",
            "complete",
            "--credits-per-step",
            "0.125",
        ]
    )
    assert args.variants == VariantConfig(
        create_status=201,
        id_field="generation_id",
        pending_statuses=("waiting", "active"),
        failed_status="failed",
        content_type="application/octet-stream",
        url_ttl_seconds=60,
        completed_status="complete",
        credits_per_step=0.125,
    )
    assert _parse_args([]).variants == VariantConfig()
    assert _parse_args(["--credits-per-step", "300"]).variants.credits_per_step == 300
    assert isinstance(_parse_args(["--credits-per-step", "300"]).variants.credits_per_step, int)

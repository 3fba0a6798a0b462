"""Generation times that vary per generation (``generation_seconds_max``), the same on every run.

Through real HTTP on 127.0.0.1. Completion is checked by moving a generation's creation time back
(``created``, the monotonic time the emulator measures from), never by sleeping, so no test depends
on the machine's speed.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any

import pytest

from airflow_provider_stableaudio.emulator import EmulatorConfig, EmulatorServer
from airflow_provider_stableaudio.emulator.__main__ import _parse_args
from airflow_provider_stableaudio.emulator.state import generation_draw
from tests.emulator.stability_helpers import KEY, RESULTS, get, submit

if TYPE_CHECKING:
    pass

PATH = "/v2/generate/audio"
BODY = {"model": "stable-audio", "prompt": "calm piano", "seconds_total": 1, "steps": 1}


@pytest.fixture(autouse=True)
def _clean(server: EmulatorServer) -> None:
    server.reset()
    server.set_generation_seconds(0)


def call(server: EmulatorServer, method: str, path: str, body: Any = None, key: str | None = KEY) -> Any:
    """One JSON request; return ``(status, body)``."""
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(server.base_url + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def create(server: EmulatorServer) -> str:
    status, body = call(server, "POST", PATH, BODY)
    assert status == 200, body
    generation_id: str = body["id"]
    return generation_id


def poll_status(server: EmulatorServer, generation_id: str) -> str:
    status, body = call(server, "GET", f"{PATH}?generation_id={generation_id}")
    assert status == 200, body
    result: str = body["status"]
    return result


def times(server: EmulatorServer) -> list[float]:
    return [g["generation_seconds"] for g in server.ledger()["generations"]]


def backdate(server: EmulatorServer, generation_id: str, seconds: float, *, stability: bool = False) -> None:
    """Make the generation ``seconds`` old, as the emulator's clock sees it."""

    def apply() -> None:
        store = server.state.stability.generations if stability else server.state.generations
        store[generation_id].created = time.monotonic() - seconds

    server._call(apply)  # on the emulator's loop, which owns its state


def test_the_draws_are_uniform_in_zero_to_one_and_fixed() -> None:
    draws = [generation_draw(i) for i in range(10_000)]
    assert all(0 <= d < 1 for d in draws)
    assert draws == [generation_draw(i) for i in range(10_000)]
    per_tenth = [sum(1 for d in draws if k / 10 <= d < (k + 1) / 10) for k in range(10)]
    assert all(900 <= n <= 1100 for n in per_tenth), per_tenth


def test_every_generation_takes_generation_seconds_when_no_maximum_is_set(server: EmulatorServer) -> None:
    server.set_generation_seconds(7)
    for _ in range(5):
        create(server)
    assert times(server) == [7.0] * 5


def test_each_generation_takes_its_own_time_within_the_range(server: EmulatorServer) -> None:
    server.set_generation_seconds(20, generation_seconds_max=40)
    for _ in range(100):
        create(server)
    drawn = times(server)
    assert all(20 <= t <= 40 for t in drawn)
    assert min(drawn) < 22
    assert max(drawn) > 38
    assert len(set(drawn)) == 100


def test_the_same_times_come_again_after_a_reset(server: EmulatorServer) -> None:
    server.set_generation_seconds(30, generation_seconds_max=90)
    for _ in range(20):
        create(server)
    first = times(server)
    server.reset()
    for _ in range(20):
        create(server)
    assert times(server) == first


def test_a_generation_completes_at_its_own_time_not_at_the_minimum(server: EmulatorServer) -> None:
    server.set_generation_seconds(100, generation_seconds_max=200)
    generation_id = create(server)
    (own,) = times(server)
    assert 100 < own <= 200
    backdate(server, generation_id, own - 1)  # past the minimum, short of its own time
    assert poll_status(server, generation_id) == "generating"
    backdate(server, generation_id, own + 1)
    assert poll_status(server, generation_id) == "completed"


def test_a_stability_result_is_ready_at_its_own_time_and_counts_in_the_same_sequence(
    server: EmulatorServer,
) -> None:
    server.set_generation_seconds(100, generation_seconds_max=200)
    create(server)  # the AI/ML API's generation is the first of the sequence
    generation_id = submit(server)
    (aiml,) = times(server)
    (entry,) = server.ledger()["stability"]["generations"]
    own = entry["generation_seconds"]
    assert 100 <= own <= 200
    assert own == 100 + 100 * generation_draw(1) != aiml
    backdate(server, generation_id, own - 1, stability=True)
    assert get(server, RESULTS + generation_id).status_code == 202
    backdate(server, generation_id, own + 1, stability=True)
    assert get(server, RESULTS + generation_id).status_code == 200


def test_setting_generation_seconds_alone_turns_the_range_off(server: EmulatorServer) -> None:
    server.set_generation_seconds(1, generation_seconds_max=5)
    assert server.state.config.generation_seconds_max == 5
    server.set_generation_seconds(2)
    assert server.state.config.generation_seconds_max is None


@pytest.mark.parametrize(("seconds", "upper"), [(5, 4), (1, -1), (1, float("inf"))])
def test_set_generation_seconds_refuses_a_bad_maximum(
    server: EmulatorServer, seconds: float, upper: float
) -> None:
    with pytest.raises(ValueError, match="must be"):
        server.set_generation_seconds(seconds, generation_seconds_max=upper)
    assert server.state.config.generation_seconds_max is None


def test_the_admin_route_sets_reports_and_validates_the_maximum(server: EmulatorServer) -> None:
    status, body = call(
        server, "POST", "/_emulator/config", {"generation_seconds": 2, "generation_seconds_max": 6}
    )
    assert status == 200
    assert (body["generation_seconds"], body["generation_seconds_max"]) == (2, 6)
    assert call(server, "GET", "/_emulator/config")[1]["generation_seconds_max"] == 6
    for bad in ({"generation_seconds_max": 1}, {"generation_seconds_max": "slow"}, {"generation_seconds": 7}):
        status, body = call(server, "POST", "/_emulator/config", bad)
        assert (status, "generation_seconds" in body["message"]) == (400, True), body
    assert server.state.config.generation_seconds_max == 6
    status, body = call(server, "POST", "/_emulator/config", {"generation_seconds_max": None})
    assert status == 200
    assert body["generation_seconds_max"] is None


def test_the_command_line_sets_and_checks_the_maximum(capsys: pytest.CaptureFixture[str]) -> None:
    args = _parse_args(["--generation-seconds", "20", "--generation-seconds-max", "40"])
    assert (args.generation_seconds, args.generation_seconds_max) == (20, 40)
    assert _parse_args([]).generation_seconds_max is None
    with pytest.raises(SystemExit) as exited:
        _parse_args(["--generation-seconds", "20", "--generation-seconds-max", "10"])
    assert exited.value.code == 2
    assert "--generation-seconds-max must be >= --generation-seconds" in capsys.readouterr().err


def test_a_config_with_a_maximum_below_the_minimum_is_refused() -> None:
    with pytest.raises(ValueError, match="generation_seconds_max: must be >= generation_seconds"):
        EmulatorConfig(generation_seconds=3, generation_seconds_max=2)

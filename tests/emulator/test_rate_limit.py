"""The emulator limits a key's requests as the real services do: a window, a lockout, 429s that create nothing.

Against the real emulator over loopback. Most tests drive the limiter's clock (``KeyLimiter.clock``)
so that windows and lockouts are exact whatever the machine's load; one uses the real clock with a
short lockout, and sleeps longer than it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests

from airflow_provider_stableaudio.emulator import EmulatorConfig, EmulatorServer, RateLimitConfig
from airflow_provider_stableaudio.emulator.__main__ import _parse_args
from tests.emulator.stability_helpers import BALANCE, KEY, SUBMIT, SYNC, get, post

if TYPE_CHECKING:
    from collections.abc import Iterator

OTHER_KEY = "test-key-other-4d2e81"
AIML = "/v2/generate/audio"
AIML_BODY = {"model": "stable-audio", "prompt": "calm piano", "seconds_total": 2}
STABILITY_FIELDS = {"prompt": "calm piano", "duration": 2, "output_format": "wav"}
STABILITY_MESSAGE = (
    "You have exceeded the rate limit of 150 requests within a 10 second period, "
    "and have been timed out for 60 seconds."
)
REPO_ROOT = Path(__file__).resolve().parents[2]
AUTH = {"Authorization": f"Bearer {KEY}"}


class Clock:
    """The limiter's monotonic clock, moved by the test."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    config = EmulatorConfig(generation_seconds=0, api_keys=frozenset({KEY, OTHER_KEY}))
    with EmulatorServer(config=config) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _clean(server: EmulatorServer) -> Iterator[None]:
    server.clear_faults()
    server.clear_rate_limit()
    server.reset()
    yield
    server.state.limiter.clock = time.monotonic


@pytest.fixture
def clock(server: EmulatorServer) -> Clock:
    fake = Clock()
    server.state.limiter.clock = fake
    return fake


def balance(server: EmulatorServer, key: str = KEY) -> requests.Response:
    return get(server, BALANCE, key=key)


def aiml(server: EmulatorServer, method: str = "GET", key: str | None = KEY) -> requests.Response:
    """An AI/ML API request: a poll of an unknown id (404 when it passes), or a submit."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    if method == "POST":
        return requests.post(server.base_url + AIML, json=AIML_BODY, headers=headers, timeout=10)
    return requests.get(server.base_url + AIML, params={"generation_id": "x"}, headers=headers, timeout=10)


def statuses(server: EmulatorServer, count: int, key: str = KEY) -> list[int]:
    return [balance(server, key).status_code for _ in range(count)]


def limit_ledger(server: EmulatorServer) -> dict[str, Any]:
    ledger: dict[str, Any] = server.ledger()["rate_limit"]
    return ledger


def test_there_is_no_limit_by_default(server: EmulatorServer) -> None:
    assert server.rate_limit == RateLimitConfig()
    config = requests.get(server.base_url + "/_emulator/config", timeout=10).json()
    assert config["limit_requests"] is None
    with requests.Session() as session:
        answers = {
            session.get(server.base_url + BALANCE, headers=AUTH, timeout=10).status_code for _ in range(160)
        }
    assert answers == {200}  # more than Stability's 150 per 10 s
    ledger = limit_ledger(server)
    assert (ledger["requests_limited"], ledger["lockouts"], ledger["keys"]) == (0, 0, [])


def test_the_request_over_the_limit_is_a_429_with_stabilitys_message_and_no_retry_after(
    server: EmulatorServer, clock: Clock
) -> None:
    server.set_rate_limit(limit_requests=150)  # the defaults: Stability's 10 s window, 60 s lockout
    with requests.Session() as session:
        passed = [
            session.get(server.base_url + BALANCE, headers=AUTH, timeout=10).status_code for _ in range(150)
        ]
    assert passed == [200] * 150
    refused = balance(server)
    assert refused.status_code == 429
    assert "Retry-After" not in refused.headers
    body = refused.json()
    assert body == {
        "id": refused.headers["x-request-id"],
        "name": "rate_limit_exceeded",
        "errors": [STABILITY_MESSAGE],
    }


def test_the_429_carries_retry_after_until_the_lockout_ends_when_set(
    server: EmulatorServer, clock: Clock
) -> None:
    server.set_rate_limit(limit_requests=2, limit_retry_after=True)
    assert [aiml(server).status_code for _ in range(2)] == [404, 404]
    refused = aiml(server)
    assert (refused.status_code, refused.headers["Retry-After"]) == (429, "60")
    body = refused.json()  # the AI/ML API's envelope, as its 429 fault answers
    assert (body["statusCode"], body["message"], body["path"]) == (429, "Too Many Requests", AIML)
    clock.now += 20.5
    assert aiml(server).headers["Retry-After"] == "40"  # what is left, rounded up


def test_submits_during_the_lockout_create_nothing_and_cost_nothing(
    server: EmulatorServer, clock: Clock
) -> None:
    server.set_rate_limit(limit_requests=1)
    assert balance(server).status_code == 200
    assert aiml(server, "POST").status_code == 429  # the request over the limit starts the lockout
    clock.now += 30
    assert aiml(server, "POST").status_code == 429
    assert post(server, SUBMIT + "text-to-audio", STABILITY_FIELDS).status_code == 429
    assert post(server, SYNC + "text-to-audio", STABILITY_FIELDS).status_code == 429
    ledger = server.ledger()
    assert ledger["generations"] == []
    assert (ledger["stability"]["submit_count"], ledger["stability"]["credits_used"]) == (0, 0)
    assert (ledger["rate_limit"]["requests_limited"], ledger["rate_limit"]["lockouts"]) == (4, 1)


def test_requests_pass_again_once_the_lockout_ends_with_an_empty_window(
    server: EmulatorServer, clock: Clock
) -> None:
    # The window outlasts the lockout: had it kept the first two requests, the next would be refused.
    server.set_rate_limit(limit_requests=2, limit_window_seconds=100, limit_lockout_seconds=60)
    assert statuses(server, 3) == [200, 200, 429]
    clock.now += 59.9
    assert balance(server).status_code == 429  # which does not extend the lockout
    clock.now += 0.1
    assert statuses(server, 3) == [200, 200, 429]
    assert limit_ledger(server)["lockouts"] == 2


def test_an_extending_lockout_starts_again_at_each_request_during_it(
    server: EmulatorServer, clock: Clock
) -> None:
    server.set_rate_limit(limit_requests=1, limit_lockout_seconds=60, limit_lockout_extends=True)
    assert statuses(server, 2) == [200, 429]
    clock.now += 50
    assert balance(server).status_code == 429  # the lockout now ends at 110
    clock.now += 59
    assert balance(server).status_code == 429  # without extending it would pass: now at 169
    clock.now += 60
    assert balance(server).status_code == 200
    assert limit_ledger(server)["lockouts"] == 1


def test_the_window_slides_rather_than_restarting_on_a_clock_boundary(
    server: EmulatorServer, clock: Clock
) -> None:
    server.set_rate_limit(limit_requests=2, limit_window_seconds=10)
    clock.now = 1000.0
    assert balance(server).status_code == 200
    clock.now = 1005.0
    assert balance(server).status_code == 200
    clock.now = 1010.0  # the first request has left the window
    assert balance(server).status_code == 200
    clock.now = 1014.9  # two requests within the last 10 s: fixed windows (1010..1020) would allow a second
    assert balance(server).status_code == 429


def test_a_lockout_of_zero_refuses_only_the_requests_over_the_limit(
    server: EmulatorServer, clock: Clock
) -> None:
    server.set_rate_limit(
        limit_requests=2, limit_window_seconds=10, limit_lockout_seconds=0, limit_retry_after=True
    )
    assert statuses(server, 2) == [200, 200]
    clock.now += 9
    refused = balance(server)
    assert (refused.status_code, refused.headers["Retry-After"]) == (429, "1")
    assert "timed out" not in refused.json()["errors"][0]
    clock.now += 1  # the first two leave the window; the refused one never entered it
    assert statuses(server, 3) == [200, 200, 429]
    assert (limit_ledger(server)["requests_limited"], limit_ledger(server)["lockouts"]) == (2, 0)


def test_two_keys_are_limited_separately(server: EmulatorServer, clock: Clock) -> None:
    server.set_rate_limit(limit_requests=2)
    assert statuses(server, 3, KEY) == [200, 200, 429]
    assert statuses(server, 3, OTHER_KEY) == [200, 200, 429]
    assert balance(server, KEY).status_code == 429
    ledger = limit_ledger(server)
    assert ledger["keys"] == [
        {"index": 0, "requests": 4, "requests_limited": 2, "lockouts": 1, "locked_out": True},
        {"index": 1, "requests": 3, "requests_limited": 1, "lockouts": 1, "locked_out": True},
    ]
    text = json.dumps(server.ledger())
    assert KEY not in text
    assert OTHER_KEY not in text


def test_the_ledger_counts_the_limits_429s_and_lockouts(server: EmulatorServer, clock: Clock) -> None:
    server.set_rate_limit(limit_requests=1, limit_lockout_seconds=60)
    assert [aiml(server).status_code for _ in range(4)] == [404, 429, 429, 429]
    clock.now += 60
    assert [aiml(server).status_code for _ in range(2)] == [404, 429]
    ledger = server.ledger()
    limit = ledger["rate_limit"]
    assert (limit["requests_limited"], limit["lockouts"]) == (4, 2)
    assert limit["settings"] == {**RateLimitConfig().to_json(), "limit_requests": 1}
    assert [(r["status"], r["fault"]) for r in ledger["requests"]] == [
        (404, None),
        *[(429, None)] * 3,
        (404, None),
        (429, None),
    ]
    assert ledger["faults"]["429"] == 0  # the limit's 429s are not faults


def test_downloads_refused_keys_and_admin_routes_do_not_count(server: EmulatorServer, clock: Clock) -> None:
    server.set_rate_limit(limit_requests=2)
    created = aiml(server, "POST")
    generation_id = created.json()["id"]
    poll = requests.get(
        server.base_url + AIML,
        params={"generation_id": generation_id},
        headers=AUTH,
        timeout=10,
    )
    url = poll.json()["audio_file"]["url"]
    for headers in ({}, AUTH):
        assert [requests.get(url, headers=headers, timeout=10).status_code for _ in range(2)] == [200, 200]
    assert statuses(server, 3, "not-an-accepted-key") == [401] * 3
    assert aiml(server, key=None).status_code == 401
    for _ in range(3):
        assert requests.get(server.base_url + "/_emulator/config", timeout=10).status_code == 200
    assert aiml(server).status_code == 429  # the third counted request: the create and the poll came first
    assert [k["requests"] for k in limit_ledger(server)["keys"]] == [3]


def test_the_limit_answers_before_faults_are_drawn_and_faulted_requests_count(
    server: EmulatorServer, clock: Clock
) -> None:
    server.set_rate_limit(limit_requests=1)
    server.set_faults(rate_5xx=1.0, fault_methods="GET")
    assert balance(server).status_code in (500, 502, 503, 504)
    assert balance(server).status_code == 429
    ledger = server.ledger()
    assert [r["fault"] is None for r in ledger["requests"]] == [False, True]
    assert sum(ledger["faults"].values()) == 1


def test_the_admin_route_sets_validates_and_clears_the_limit(server: EmulatorServer, clock: Clock) -> None:
    url = server.base_url + "/_emulator/config"
    settings = {
        "limit_requests": 1,
        "limit_window_seconds": 0.5,
        "limit_lockout_seconds": 1,
        "limit_retry_after": True,
        "limit_lockout_extends": False,
    }
    reply = requests.post(url, json=settings, timeout=10)
    assert reply.status_code == 200
    assert {name: reply.json()[name] for name in settings} == settings
    assert server.rate_limit == RateLimitConfig(**settings)  # type: ignore[arg-type]
    assert statuses(server, 2) == [200, 429]
    assert balance(server).headers["Retry-After"] == "1"
    for bad in (
        {"limit_requests": 0},
        {"limit_requests": 1.5},
        {"limit_requests": True},
        {"limit_window_seconds": 0},
        {"limit_lockout_seconds": -1},
        {"limit_lockout_seconds": "60"},
        {"limit_retry_after": "yes"},
        {"clear_rate_limit": 1},
    ):
        reply = requests.post(url, json=bad, timeout=10)
        assert reply.status_code == 400, bad
        assert next(iter(bad)) in reply.json()["message"]
    assert server.rate_limit.limit_requests == 1  # a refused body changes nothing
    assert requests.post(url, json={"clear_rate_limit": True}, timeout=10).json()["limit_requests"] is None
    assert statuses(server, 3) == [200] * 3
    requests.post(url, json={"limit_requests": 5}, timeout=10)
    assert requests.post(url, json={"clear_faults": True}, timeout=10).json()["limit_requests"] is None


def test_set_rate_limit_validates_and_new_settings_start_the_windows_afresh(
    server: EmulatorServer, clock: Clock
) -> None:
    with pytest.raises(ValueError, match="limit_requests"):
        server.set_rate_limit(limit_requests=0)
    with pytest.raises(TypeError):
        server.set_rate_limit(limit_everything=1)  # type: ignore[call-arg]
    server.set_rate_limit(limit_requests=1)
    assert statuses(server, 2) == [200, 429]
    server.set_rate_limit(limit_requests=2)  # the lockout of the old settings ends
    assert statuses(server, 3) == [200, 200, 429]
    assert limit_ledger(server)["lockouts"] == 2  # the counts are kept until a reset
    server.clear_faults()  # what the tests' emulator fixture calls: no limit afterwards
    assert server.rate_limit == RateLimitConfig()


def test_a_reset_ends_lockouts_and_zeroes_the_counts_but_keeps_the_limit(
    server: EmulatorServer, clock: Clock
) -> None:
    server.set_rate_limit(limit_requests=1)
    assert statuses(server, 2) == [200, 429]
    server.reset()
    ledger = limit_ledger(server)
    assert (ledger["requests_limited"], ledger["lockouts"], ledger["keys"]) == (0, 0, [])
    assert statuses(server, 2) == [200, 429]


def test_the_real_clock_ends_a_short_lockout(server: EmulatorServer) -> None:
    server.set_rate_limit(limit_requests=1, limit_window_seconds=60, limit_lockout_seconds=0.5)
    assert statuses(server, 2) == [200, 429]
    time.sleep(0.6)  # at least the lockout, however loaded the machine
    assert balance(server).status_code == 200


def test_the_command_line_sets_the_limit() -> None:
    args = _parse_args(["--limit-requests", "150"])
    assert args.rate_limit == RateLimitConfig(limit_requests=150)
    args = _parse_args(
        [
            "--limit-requests",
            "3",
            "--limit-window-seconds",
            "0.5",
            "--limit-lockout-seconds",
            "1",
            "--limit-retry-after",
            "--limit-lockout-extends",
        ]
    )
    assert args.rate_limit == RateLimitConfig(
        limit_requests=3,
        limit_window_seconds=0.5,
        limit_lockout_seconds=1,
        limit_retry_after=True,
        limit_lockout_extends=True,
    )
    assert _parse_args(["--no-limit-retry-after"]).rate_limit == RateLimitConfig()
    assert _parse_args([]).rate_limit == RateLimitConfig()


def test_the_command_line_rejects_a_bad_limit(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        _parse_args(["--limit-requests", "0"])
    assert exited.value.code == 2
    assert "--limit-requests: must be an integer >= 1" in capsys.readouterr().err


def test_the_emulator_started_from_the_command_line_limits_the_key(tmp_path: Path) -> None:
    port_file = tmp_path / "port"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    options = "--port 0 --limit-requests 1 --limit-window-seconds 3600 --limit-lockout-seconds 5 --limit-retry-after"
    command = [sys.executable, "-m", "airflow_provider_stableaudio.emulator", *options.split()]
    proc = subprocess.Popen(
        [*command, "--port-file", str(port_file)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not port_file.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the emulator did not write its port file"
            time.sleep(0.05)
        base = f"http://127.0.0.1:{int(port_file.read_text())}"
        headers = {"Authorization": "Bearer k"}
        answers = [requests.get(base + BALANCE, headers=headers, timeout=10) for _ in range(2)]
        config = requests.get(base + "/_emulator/config", timeout=10).json()
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    assert [a.status_code for a in answers] == [200, 429]
    assert answers[1].headers["Retry-After"] == "5"
    assert answers[1].json()["name"] == "rate_limit_exceeded"
    assert {k: v for k, v in config.items() if k.startswith("limit_")} == {
        "limit_requests": 1,
        "limit_window_seconds": 3600.0,
        "limit_lockout_seconds": 5.0,
        "limit_retry_after": True,
        "limit_lockout_extends": False,
    }

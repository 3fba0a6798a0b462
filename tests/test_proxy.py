"""Where the only way out is a proxy, the worker and the triggerer both take it, as the environment says.

The connection's host is ``127.0.0.1:<closed>``: a port bound but not listening, so the direct route is
refused. A forward proxy on loopback (``tests/forward_proxy.py``) serves that address from the emulator.
Nothing leaves loopback: the proxy reaches only the emulator, and no name is ever resolved.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred

from airflow_provider_stableaudio.emulator import EmulatorServer
from airflow_provider_stableaudio.exceptions import StableAudioConnectionError
from airflow_provider_stableaudio.generation_request import GenerationRequest
from airflow_provider_stableaudio.hooks import base as hook_module
from airflow_provider_stableaudio.hooks.async_session import proxy_for
from airflow_provider_stableaudio.hooks.stable_audio import StableAudioHook
from airflow_provider_stableaudio.operators.stable_audio import StableAudioGenerateOperator
from tests.conftest import API_KEY, set_connection
from tests.fake_clock import fake_clock
from tests.forward_proxy import Forwarded, ForwardProxy
from tests.operators.test_stable_audio_operator import context
from tests.scripted_server import Reply

PROXY_LOGIN = "proxy-user:proxy-pass"


def proxy_environment(monkeypatch: pytest.MonkeyPatch, **variables: str) -> None:
    """Only ``variables`` of the ``*_proxy`` family, each in both cases (this machine may set some)."""
    for name in list(os.environ):
        if name.lower().endswith("_proxy"):
            monkeypatch.delenv(name)
    for name, value in variables.items():
        monkeypatch.setenv(name.upper(), value)
        monkeypatch.setenv(name.lower(), value)


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port bound (so nobody else takes it) but not listening: connections are refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
def proxy(emulator: EmulatorServer, closed_port: int) -> Iterator[ForwardProxy]:
    """A proxy that serves ``127.0.0.1:<closed_port>`` (and the emulator's own address) from the emulator."""
    to_emulator = ("127.0.0.1", emulator.port)
    routes = {f"127.0.0.1:{closed_port}": to_emulator, f"127.0.0.1:{emulator.port}": to_emulator}
    with ForwardProxy(routes) as running:
        yield running


@pytest.fixture
def proxy_only(proxy: ForwardProxy, closed_port: int, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both connections point at the closed port; ``HTTP_PROXY`` (with a login) at the proxy. Their URL."""
    base_url = f"http://127.0.0.1:{closed_port}"
    for conn_id, conn_type in (("stableaudio_default", "stableaudio"), ("stability_default", "stability")):
        set_connection(monkeypatch, conn_id, conn_type=conn_type, host=base_url, password=API_KEY)
    proxy_environment(monkeypatch, http_proxy=proxy.url.replace("//", f"//{PROXY_LOGIN}@"))
    return base_url


def the_event(trigger: Any) -> dict[str, Any]:
    async def run() -> list[dict[str, Any]]:
        return [event.payload async for event in trigger.run()]

    (event,) = asyncio.run(run())
    return event


def run_deferred(task: StableAudioGenerateOperator) -> tuple[dict[str, Any], Any]:
    """Execute ``task`` until it defers: ``(its context, its trigger)``."""
    ctx = context()
    with pytest.raises(TaskDeferred) as deferred:
        task.execute(ctx)
    return ctx, deferred.value.trigger


def aiml_task(tmp_path: Path) -> StableAudioGenerateOperator:
    # Short timeout: without the proxy a trigger retries until it, then times out.
    return StableAudioGenerateOperator(
        task_id="generate",
        prompt="a cheerful ukulele riff",
        seconds_total=2,
        poll_interval=0.1,
        timeout=30,
        output_path=str(tmp_path / "clip.wav"),
    )


def stability_task(tmp_path: Path, model: str) -> StableAudioGenerateOperator:
    return StableAudioGenerateOperator(
        task_id="generate",
        conn_id="stability_default",
        model=model,
        prompt="a slow cello drone",
        duration=3,
        output_format="wav",
        poll_interval=0.1,
        timeout=30,
        output_path=str(tmp_path / "clip.wav"),
    )


def requests_of(seen: list[Forwarded], start: int = 0, end: int | None = None) -> list[tuple[str, str]]:
    return [(f.method, f.url.split("?")[0]) for f in seen[start:end]]


def test_the_worker_and_the_trigger_reach_the_api_only_through_the_proxy(
    emulator: EmulatorServer, proxy: ForwardProxy, proxy_only: str, tmp_path: Path
) -> None:
    task = aiml_task(tmp_path)
    ctx, trigger = run_deferred(task)
    submitted = len(proxy.seen)
    event = the_event(trigger)
    polled = len(proxy.seen)
    assert event["status"] == "success", event
    task.execute_complete(ctx, event)

    api = f"{proxy_only}/v2/generate/audio"
    assert requests_of(proxy.seen, 0, submitted) == [("POST", api)]  # the worker's submit
    trigger_requests = requests_of(proxy.seen, submitted, polled)
    assert trigger_requests  # the triggerer's polls
    assert set(trigger_requests) == {("GET", api)}
    download = requests_of(proxy.seen, polled)
    assert download == [("GET", event["url"])]  # the worker's download, from the proxied address
    assert event["url"].startswith(f"{proxy_only}/files/")

    (generation,) = emulator.ledger()["generations"]
    assert Path(ctx["ti"].xcom("local_path")).stat().st_size == event["file_size"]
    assert generation["status"] == "completed"
    login = "Basic " + base64.b64encode(PROXY_LOGIN.encode()).decode()
    assert {f.headers.get("Proxy-Authorization") for f in proxy.seen} == {login}  # both clients
    assert {f.headers.get("Authorization") for f in proxy.seen[:polled]} == {f"Bearer {API_KEY}"}
    assert "Authorization" not in proxy.seen[polled].headers  # the key never goes to the audio host


@pytest.mark.parametrize("model", ["stable-audio-3", "stable-audio-2.5"])
def test_stability_generations_go_through_the_proxy(
    stability: EmulatorServer, proxy: ForwardProxy, proxy_only: str, tmp_path: Path, model: str
) -> None:
    task = stability_task(tmp_path, model)
    if model == "stable-audio-3":  # submit on the worker, polls in the triggerer, the result on the worker
        ctx, trigger = run_deferred(task)
        event = the_event(trigger)
        assert event["status"] == "success", event
        stored_at = task.execute_complete(ctx, event)
    else:  # one synchronous call on the worker
        stored_at = task.execute(context())
    (generation,) = stability.ledger()["stability"]["generations"]
    assert hashlib.sha256(Path(stored_at).read_bytes()).hexdigest() == generation["sha256"]
    assert proxy.seen
    assert all(f.url.startswith(f"{proxy_only}/v2beta/") for f in proxy.seen)
    assert "POST" in {f.method for f in proxy.seen}


@pytest.mark.parametrize("no_proxy", ["127.0.0.1", "127.0.0.0/8"])
def test_no_proxy_is_honoured_by_the_worker_and_the_trigger(
    emulator: EmulatorServer,
    proxy: ForwardProxy,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    no_proxy: str,
) -> None:
    set_connection(monkeypatch, host=emulator.base_url, password=API_KEY)  # the direct route works here
    proxy_environment(monkeypatch, http_proxy=proxy.url, no_proxy=no_proxy)
    task = aiml_task(tmp_path)
    ctx, trigger = run_deferred(task)
    event = the_event(trigger)
    assert event["status"] == "success", event
    task.execute_complete(ctx, event)
    assert proxy.seen == []  # the proxy would have served them all: nobody asked it


@pytest.mark.parametrize(
    ("url", "variables", "expected"),
    [("https://api.aimlapi.com/v2/generate/audio", {"https_proxy": "http://proxy.corp:3128"},
      "http://proxy.corp:3128"),
     ("https://api.aimlapi.com/v2/generate/audio", {"http_proxy": "http://proxy.corp:3128"}, None),
     ("https://api.stability.ai/v2beta/results/g", {"all_proxy": "http://proxy.corp:3128"},
      "http://proxy.corp:3128"),
     ("https://api.stability.ai/v2beta/results/g", {"https_proxy": "proxy.corp:3128"},
      "http://proxy.corp:3128"),  # a bare host:port is an http proxy, as requests reads it
     ("https://api.aimlapi.com/v2/generate/audio",
      {"https_proxy": "http://proxy.corp:3128", "no_proxy": "localhost,.aimlapi.com"}, None),
     ("http://10.1.2.3:8000/v2/generate/audio",
      {"http_proxy": "http://proxy.corp:3128", "no_proxy": "10.0.0.0/8"}, None)],
)  # fmt: skip
def test_the_trigger_picks_the_proxy_requests_picks(
    monkeypatch: pytest.MonkeyPatch, url: str, variables: dict[str, str], expected: str | None
) -> None:
    proxy_environment(monkeypatch, **variables)
    assert asyncio.run(proxy_for(url)) == expected  # the environment is read: nothing is resolved or sent


@pytest.fixture
def netrc_for_every_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A ``.netrc`` whose ``default`` login matches any host; its password."""
    path = tmp_path / "netrc"
    path.write_text("default login netrc-user password netrc-secret-3f9a\n")
    path.chmod(0o600)
    monkeypatch.setenv("NETRC", str(path))
    return "netrc-secret-3f9a"


def test_a_netrc_login_neither_replaces_the_key_nor_reaches_the_audio_host(
    netrc_for_every_host: str, proxy: ForwardProxy, proxy_only: str, tmp_path: Path
) -> None:
    task = aiml_task(tmp_path)
    ctx, trigger = run_deferred(task)
    event = the_event(trigger)
    assert event["status"] == "success", event
    task.execute_complete(ctx, event)
    authorizations = [f.headers.get("Authorization") for f in proxy.seen]
    assert authorizations[-1] is None  # the download
    assert set(authorizations[:-1]) == {f"Bearer {API_KEY}"}  # the submit, the trigger's polls


def test_a_redirect_adds_no_netrc_login(
    netrc_for_every_host: str, scripted, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy_environment(monkeypatch)  # straight to the loopback server
    scripted.script(Reply(302, b"", headers={"Location": f"{scripted.base_url}/moved"}), Reply(200, b"RIFF"))
    response = StableAudioHook().get_conn().get(f"{scripted.base_url}/files/clip.wav", timeout=10)
    assert response.status_code == 200
    assert [s.path for s in scripted.seen] == ["/files/clip.wav", "/moved"]
    assert [s.headers.get("Authorization") for s in scripted.seen] == [None, None]


def test_a_submit_that_cannot_reach_its_proxy_is_retried_then_fails_saying_nothing_was_sent(
    emulator: EmulatorServer, closed_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = fake_clock(monkeypatch, hook_module)
    set_connection(monkeypatch, host=emulator.base_url, password=API_KEY)
    proxy_environment(monkeypatch, http_proxy=f"http://127.0.0.1:{closed_port}")  # a proxy that is down
    with pytest.raises(StableAudioConnectionError, match="before the request was sent") as caught:
        StableAudioHook(max_retries=2).submit_generation(
            GenerationRequest.build(prompt="a soft harp arpeggio", seconds_total=2)
        )
    assert caught.value.request_sent is False
    assert "pay twice" not in str(caught.value)
    assert len(clock.sleeps) == 2  # retried with backoff
    assert emulator.ledger()["requests"] == []


def test_the_proxy_is_looked_up_once_for_many_polls_and_again_when_the_environment_changes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow_provider_stableaudio.hooks import async_session

    lookups: list[str] = []
    environ_proxy = async_session._environ_proxy

    def counted(url: str) -> str | None:
        lookups.append(url)
        return environ_proxy(url)

    monkeypatch.setattr(async_session, "_environ_proxy", counted)
    monkeypatch.setattr(async_session, "_PROXIES", {})
    proxy_environment(monkeypatch, https_proxy="http://proxy.corp:3128")

    async def polls() -> list[str | None]:
        return [
            await proxy_for(f"https://api.aimlapi.com/v2/generate/audio?generation_id=g{n}")
            for n in range(50)
        ]

    assert set(asyncio.run(polls())) == {"http://proxy.corp:3128"}
    assert len(lookups) == 1  # one lookup (and thread hop) for the host, not one per poll
    proxy_environment(monkeypatch, https_proxy="http://proxy.corp:3128", no_proxy=".aimlapi.com")
    assert asyncio.run(polls()) == [None] * 50
    assert len(lookups) == 2

"""The audio URL is untrusted input: what it may reach, what its answer must be, how much and how long.

No test here sends a packet anywhere but loopback, not even a DNS query: every name is answered by a
stub resolver, and the ``loopback_only`` guard fails any test that connects elsewhere or looks a
name up through the system (a refusal must come before any connection).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import threading
import time
import wave
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest

from airflow_provider_stableaudio import download, untrusted_url
from airflow_provider_stableaudio.exceptions import (
    StableAudioConfigError,
    StableAudioDownloadError,
    StableAudioResponseError,
    StableAudioSubmissionUnknownError,
)
from airflow_provider_stableaudio.hooks.base import MAX_ANSWER_BYTES
from airflow_provider_stableaudio.hooks.stable_audio import StableAudioHook
from airflow_provider_stableaudio.settings import DEFAULT_MAX_DOWNLOAD_BYTES, settings_from_connection
from airflow_provider_stableaudio.untrusted_url import LINK_LOCAL, LOOPBACK, PRIVATE, address_kind
from tests.conftest import API_KEY, set_connection
from tests.fake_clock import FakeClock, fake_clock
from tests.hooks.test_stable_audio_hook import request
from tests.operators.test_stable_audio_operator import RecordingTI, operator
from tests.scripted_server import Reply, ScriptedServer

PUBLIC = "93.184.215.14"  # only ever a stub's answer: nothing connects to it


def _wav() -> bytes:
    out = BytesIO()
    with wave.open(out, "wb") as clip:
        clip.setnchannels(1)
        clip.setsampwidth(2)
        clip.setframerate(8000)
        clip.writeframes(b"\x00\x01" * 800)
    return out.getvalue()


WAV = _wav()
SIGN_IN = b"<!DOCTYPE html><html><head><title>Sign in</title></head><body><form>...</form></body></html>"


def _loopback(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return address.is_loopback


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Refuse (and record) every connection away from loopback and every lookup of a name through
    the system's resolver; the test fails at teardown if there was any."""
    violations: list[str] = []
    real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def connect(sock: socket.socket, address: Any) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _loopback(address[0]):
            violations.append(f"connect to {address}")
            raise ConnectionRefusedError(f"the tests connect to loopback only, not {address}")
        real_connect(sock, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            ipaddress.ip_address(str(host).split("%", 1)[0])
        except ValueError:
            violations.append(f"lookup of {host}")
            raise socket.gaierror(socket.EAI_NONAME, f"the tests look up no names: {host}") from None
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield violations
    assert violations == []


@pytest.fixture
def names(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """The stub resolver's answers (name -> addresses), and the names it was asked, in ``lookups``."""
    answers: dict[str, list[str]] = {}
    real = untrusted_url.resolve

    def resolve(host: str, port: int) -> list[str]:
        answers.setdefault("lookups", []).append(host)
        try:
            ipaddress.ip_address(host)
        except ValueError:
            if host not in answers:
                raise socket.gaierror(socket.EAI_NONAME, f"no stub answer for {host}") from None
            return answers[host]
        return real(host, port)

    monkeypatch.setattr(untrusted_url, "resolve", resolve)
    return answers


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """The download's waits between attempts, recorded and skipped."""
    return fake_clock(monkeypatch, download)


def fetch(url: str, target: Path, *, base_url: str, **kwargs: Any) -> tuple[str, int]:
    import requests

    return download.download_file(requests.Session(), url, target, timeout=5, base_url=base_url, **kwargs)


# -- the two symptoms of the issue, through the operator and the emulator ---------------------------


def test_a_completed_generation_whose_url_answers_a_sign_in_page_fails_and_stores_nothing(
    connection, tmp_path: Path, clock: FakeClock
) -> None:
    with ScriptedServer() as page:
        page.script(Reply(200, SIGN_IN, headers={"Content-Type": "text/html; charset=utf-8"}))
        connection.set_generation_seconds(0)
        connection.set_variants(audio_url=page.base_url + "/files/clip.wav")
        target = tmp_path / "clips" / "clip.wav"
        with pytest.raises(StableAudioDownloadError, match="Content-Type 'text/html', not audio"):
            operator(deferrable=False, output_path=str(target)).execute({"ti": RecordingTI()})
        assert len(page.seen) == 1  # refused, not retried
    assert list((tmp_path / "clips").iterdir()) == []
    assert clock.sleeps == []


def test_a_file_url_fails_at_once_naming_its_scheme(connection, tmp_path: Path, clock: FakeClock) -> None:
    connection.set_generation_seconds(0)
    connection.set_variants(audio_url="file:///etc/passwd")
    target = tmp_path / "clips" / "clip.wav"
    with pytest.raises(StableAudioDownloadError) as caught:
        operator(deferrable=False, output_path=str(target)).execute({"ti": RecordingTI()})
    assert "its scheme is 'file', not https or http" in str(caught.value)
    assert "gave up" not in str(caught.value)
    assert clock.sleeps == []  # no download retries
    assert list((tmp_path / "clips").iterdir()) == []


# -- schemes -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    ["file:///etc/passwd", "ftp://127.0.0.1/clip.wav", "javascript:alert(1)", "data:audio/wav;base64,UklGRg==",
     "gopher://127.0.0.1:70/_", "//127.0.0.1/clip.wav", "http:///clip.wav"],
)  # fmt: skip
def test_a_url_of_another_scheme_is_refused_before_anything_is_sent(
    scripted, tmp_path: Path, clock: FakeClock, url: str
) -> None:
    with pytest.raises(StableAudioDownloadError, match="refused to fetch the audio URL"):
        StableAudioHook().download_audio(url, tmp_path / "clips" / "clip.wav")
    assert scripted.seen == []
    assert clock.sleeps == []
    assert not (tmp_path / "clips").exists()


def test_http_is_refused_when_the_connection_is_https(names: dict, tmp_path: Path) -> None:
    names["api.stableaudio.test"] = [PUBLIC]
    with pytest.raises(StableAudioDownloadError, match="its scheme is 'http', not https"):
        fetch(
            "http://cdn.stableaudio.test/clip.wav",
            tmp_path / "clip.wav",
            base_url="https://api.stableaudio.test",
        )
    assert names["lookups"] == ["api.stableaudio.test"]  # the audio URL's host was not even looked up


# -- addresses ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "kind"),
    [("127.0.0.1", LOOPBACK), ("127.9.9.9", LOOPBACK), ("::1", LOOPBACK), ("0.0.0.0", LOOPBACK),
     ("::ffff:127.0.0.1", LOOPBACK), ("169.254.169.254", LINK_LOCAL), ("fe80::1%eth0", LINK_LOCAL),
     ("::ffff:169.254.169.254", LINK_LOCAL), ("10.1.2.3", PRIVATE), ("172.16.0.1", PRIVATE),
     ("192.168.1.1", PRIVATE), ("100.64.0.1", PRIVATE), ("fd00::1", PRIVATE), ("224.0.0.251", PRIVATE),
     ("192.0.2.1", PRIVATE), (PUBLIC, None), ("2606:4700::1111", None)],
)  # fmt: skip
def test_each_address_is_public_or_of_a_kind(address: str, kind: str | None) -> None:
    assert address_kind(address) == kind


@pytest.mark.parametrize(
    ("url", "answers", "words"),
    [("http://169.254.169.254/latest/meta-data/", {}, "169.254.169.254, a link-local address"),
     ("http://10.0.0.5/clip.wav", {}, "10.0.0.5, a private address"),
     ("http://[fe80::1]/clip.wav", {}, "fe80::1, a link-local address"),
     ("http://intranet.example.test/clip.wav", {"intranet.example.test": ["192.168.0.10"]}, "a private address"),
     # One address that is not public among public ones is enough: a client may try any of them.
     ("http://cdn.example.test/clip.wav", {"cdn.example.test": [PUBLIC, "10.0.0.1"]}, "10.0.0.1, a private"),
     # An integer spelling of the address (the C resolver reads it so): the addresses are checked, not the text.
     ("http://2852039166/clip.wav", {"2852039166": ["169.254.169.254"]}, "169.254.169.254, a link-local")],
)  # fmt: skip
def test_an_address_that_is_not_public_is_refused_before_any_connection(
    scripted, names: dict, tmp_path: Path, clock: FakeClock, url: str, answers: dict, words: str
) -> None:
    # The connection's host is loopback (the scripted server): loopback URLs would be allowed, no others.
    names.update(answers)
    with pytest.raises(StableAudioDownloadError, match=words):
        StableAudioHook().download_audio(url, tmp_path / "clip.wav")
    assert scripted.seen == []
    assert clock.sleeps == []  # refused, not retried
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("url", ["https://127.0.0.1:9/clip.wav", "https://cdn.example.test/clip.wav",
                                 "https://[::ffff:127.0.0.1]/clip.wav", "https://0.0.0.0/clip.wav"])  # fmt: skip
def test_loopback_is_refused_when_the_connections_host_is_public(
    names: dict, tmp_path: Path, url: str
) -> None:
    names.update({"api.stableaudio.test": [PUBLIC], "cdn.example.test": ["127.0.0.1"]})
    with pytest.raises(StableAudioDownloadError, match="a loopback address, and the connection's own host"):
        fetch(url, tmp_path / "clip.wav", base_url="https://api.stableaudio.test")


def test_a_host_that_cannot_be_resolved_is_retried_then_fails(
    scripted, names: dict, tmp_path: Path, clock: FakeClock
) -> None:
    with pytest.raises(StableAudioDownloadError, match=r"could not resolve nowhere\.example\.test"):
        StableAudioHook(max_retries=1).download_audio(
            "http://nowhere.example.test/clip.wav", tmp_path / "c.wav"
        )
    assert len(clock.sleeps) == 1


# -- the connection goes where the check looked ------------------------------------------------


def test_the_connection_goes_to_the_address_that_was_checked(
    scripted, names: dict, tmp_path: Path, loopback_only: list[str]
) -> None:
    # The name exists only in the stub: had anything but the check resolved it, loopback_only would
    # have refused that lookup.
    names["clips.example.test"] = ["127.0.0.1"]
    port = scripted.base_url.rsplit(":", 1)[1]
    scripted.script(Reply(200, WAV, headers={"Content-Type": "audio/wav"}))
    target = tmp_path / "clip.wav"
    StableAudioHook().download_audio(f"http://clips.example.test:{port}/clip.wav", target)
    assert target.read_bytes() == WAV
    assert scripted.seen[0].headers["Host"] == f"clips.example.test:{port}"  # the name, not the address
    assert names["lookups"].count("clips.example.test") == 1


def test_a_name_that_resolves_elsewhere_the_second_time_is_still_reached_at_the_checked_address(
    scripted, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loopback_only: list[str]
) -> None:
    # DNS rebinding, with the system resolver itself: the first lookup says loopback, every later
    # one the cloud's metadata address. Only the first is ever made.
    port = int(scripted.base_url.rsplit(":", 1)[1])
    guarded = socket.getaddrinfo
    lookups: list[str] = []

    def rebinding(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host != "rebind.example.test":
            return guarded(host, *args, **kwargs)
        lookups.append(host)
        address = "127.0.0.1" if len(lookups) == 1 else "169.254.169.254"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    scripted.script(Reply(200, WAV, headers={"Content-Type": "audio/wav"}))
    target = tmp_path / "clip.wav"
    StableAudioHook().download_audio(f"http://rebind.example.test:{port}/clip.wav", target)
    assert target.read_bytes() == WAV
    assert lookups == ["rebind.example.test"]


@pytest.fixture
def through_a_proxy(scripted, monkeypatch: pytest.MonkeyPatch) -> ScriptedServer:
    """The scripted server stands in for the deployment's HTTP proxy (``HTTP_PROXY``)."""
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", scripted.base_url)
    return scripted


def test_through_a_proxy_a_name_the_worker_cannot_resolve_is_left_to_the_proxy(
    through_a_proxy: ScriptedServer, names: dict, tmp_path: Path
) -> None:
    # Where the only way out is a proxy, the worker may resolve no outside name: the proxy does.
    through_a_proxy.script(Reply(200, WAV, headers={"Content-Type": "audio/wav"}))
    target = tmp_path / "clip.wav"
    StableAudioHook().download_audio("http://cdn.example.test:8080/clip.wav", target)
    assert target.read_bytes() == WAV
    assert through_a_proxy.seen[0].path == "http://cdn.example.test:8080/clip.wav"


def test_through_a_proxy_a_name_the_worker_resolves_to_a_private_address_is_refused(
    through_a_proxy: ScriptedServer, names: dict, tmp_path: Path
) -> None:
    names["intranet.example.test"] = ["10.0.0.7"]
    with pytest.raises(StableAudioDownloadError, match=r"10\.0\.0\.7, a private address"):
        StableAudioHook().download_audio("http://intranet.example.test/clip.wav", tmp_path / "clip.wav")
    assert through_a_proxy.seen == []


def _certificate(folder: Path, name: str) -> tuple[Path, Path]:
    """A self-signed certificate for ``name`` only (no IP address in it), and its key."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[str, Path, list[str | None]]]:
    """An HTTPS server on loopback whose certificate names only ``clips.example.test``: its port, the
    certificate (to trust) and the server names the clients asked for (SNI)."""
    import ssl

    cert_file, key_file = _certificate(tmp_path, "clips.example.test")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server_names: list[str | None] = []
    context.sni_callback = lambda sock, name, ctx: server_names.append(name)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "audio/wav")
            self.send_header("Content-Length", str(len(WAV)))
            self.end_headers()
            self.wfile.write(WAV)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield str(httpd.server_address[1]), cert_file, server_names
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_over_https_the_pinned_connection_checks_the_certificate_against_the_name(
    tls_server: tuple[str, Path, list[str | None]],
    names: dict,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port, cert_file, server_names = tls_server
    names["clips.example.test"] = ["127.0.0.1"]
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert_file))
    set_connection(monkeypatch, host=f"https://127.0.0.1:{port}", password=API_KEY)
    target = tmp_path / "clip.wav"
    StableAudioHook().download_audio(f"https://clips.example.test:{port}/clip.wav", target)
    assert target.read_bytes() == WAV
    assert server_names == ["clips.example.test"]  # SNI: the name, not the address connected to


def test_over_https_a_certificate_for_another_name_is_refused(
    tls_server: tuple[str, Path, list[str | None]],
    names: dict,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port, cert_file, _ = tls_server
    names["other.example.test"] = ["127.0.0.1"]
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert_file))
    set_connection(monkeypatch, host=f"https://127.0.0.1:{port}", password=API_KEY)
    with pytest.raises(
        StableAudioDownloadError, match=r"certificate is not valid for 'other\.example\.test'"
    ):
        StableAudioHook(max_retries=0).download_audio(
            f"https://other.example.test:{port}/clip.wav", tmp_path / "clips" / "clip.wav"
        )
    assert list((tmp_path / "clips").iterdir()) == []


# -- redirects ---------------------------------------------------------------------------------


def test_a_redirect_to_a_link_local_address_is_refused_before_it_is_followed(
    scripted, tmp_path: Path, clock: FakeClock
) -> None:
    scripted.script(Reply(302, b"", headers={"Location": "http://169.254.169.254/latest/meta-data/iam"}))
    with pytest.raises(StableAudioDownloadError, match=r"169\.254\.169\.254, a link-local address"):
        StableAudioHook().download_audio(scripted.base_url + "/clip.wav", tmp_path / "clip.wav")
    assert len(scripted.seen) == 1
    assert clock.sleeps == []


def test_a_redirect_to_another_scheme_is_refused(scripted, tmp_path: Path) -> None:
    scripted.script(Reply(301, b"", headers={"Location": "file:///etc/passwd"}))
    with pytest.raises(StableAudioDownloadError, match="its scheme is 'file'"):
        StableAudioHook().download_audio(scripted.base_url + "/clip.wav", tmp_path / "clip.wav")


def test_a_redirect_on_the_same_host_is_followed(scripted, tmp_path: Path) -> None:
    scripted.script(
        Reply(302, b"", headers={"Location": "/signed/clip.wav?Signature=abc"}),
        Reply(200, WAV, headers={"Content-Type": "audio/wav"}),
    )
    target = tmp_path / "clip.wav"
    StableAudioHook().download_audio(scripted.base_url + "/clip.wav", target)
    assert target.read_bytes() == WAV
    assert [seen.path for seen in scripted.seen] == ["/clip.wav", "/signed/clip.wav?Signature=abc"]


def test_a_redirect_to_another_host_drops_the_api_key(scripted, names: dict, tmp_path: Path) -> None:
    # A result fetched from the API itself carries the key (Stability's); the CDN it redirects to must not.
    names["cdn.example.test"] = ["127.0.0.1"]
    port = scripted.base_url.rsplit(":", 1)[1]
    scripted.script(
        Reply(307, b"", headers={"Location": f"http://cdn.example.test:{port}/clip.wav"}),
        Reply(200, WAV, headers={"Content-Type": "audio/wav"}),
    )
    fetch(scripted.base_url + "/result", tmp_path / "clip.wav", base_url=scripted.base_url,
          headers={"Authorization": f"Bearer {API_KEY}"})  # fmt: skip
    first, second = scripted.seen
    assert first.headers["Authorization"] == f"Bearer {API_KEY}"
    assert "Authorization" not in second.headers
    assert second.headers["Host"] == f"cdn.example.test:{port}"


def test_a_redirect_to_a_port_out_of_range_is_refused(scripted, tmp_path: Path) -> None:
    scripted.script(Reply(302, b"", headers={"Location": "http://127.0.0.1:99999/clip.wav"}))
    with pytest.raises(StableAudioDownloadError, match="it has no valid host"):
        StableAudioHook().download_audio(scripted.base_url + "/clip.wav", tmp_path / "clip.wav")


def test_a_chain_of_redirects_ends_after_five(scripted, tmp_path: Path) -> None:
    scripted.script(*[Reply(302, b"", headers={"Location": f"/hop{n}"}) for n in range(7)])
    with pytest.raises(StableAudioDownloadError, match="more than 5 redirects"):
        StableAudioHook().download_audio(scripted.base_url + "/clip.wav", tmp_path / "clip.wav")
    assert len(scripted.seen) == 6


# -- the answer must be audio --------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type",
    ["text/html; charset=utf-8", "application/json", "text/plain", "image/png", "application/xml"],
)
def test_an_answer_of_another_type_is_refused_and_nothing_is_stored(
    scripted, tmp_path: Path, clock: FakeClock, content_type: str
) -> None:
    scripted.script(Reply(200, WAV, headers={"Content-Type": content_type}))
    with pytest.raises(StableAudioDownloadError, match="not audio; nothing was stored"):
        StableAudioHook().download_audio(scripted.base_url + "/clip.wav", tmp_path / "clip.wav")
    assert len(scripted.seen) == 1
    assert clock.sleeps == []
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/octet-stream", SIGN_IN),
        (None, b'{"error": "AccessDenied"}'),
        ("audio/wav", b"Access denied\n"),
    ],
)
def test_a_text_body_is_refused_whatever_type_it_claims(
    scripted, tmp_path: Path, content_type: str | None, body: bytes
) -> None:
    scripted.script(Reply(200, body, headers={"Content-Type": content_type} if content_type else {}))
    with pytest.raises(StableAudioDownloadError, match="begins as text"):
        StableAudioHook().download_audio(scripted.base_url + "/clip.wav", tmp_path / "clip.wav")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "body",
    [WAV, b"ID3\x04\x00\x00\x00\x00\x00\x00" + bytes(range(256)), b"\xff\xfb\x90\x64" + bytes(range(256)),
     b"fLaC\x00\x00\x00\x22" + bytes(64), b"OggS\x00\x02" + bytes(64)],
    ids=["wav", "mp3 with a tag", "mp3 frames", "flac", "ogg"],
)  # fmt: skip
def test_audio_served_as_octet_stream_is_kept(scripted, tmp_path: Path, body: bytes) -> None:
    # What the AI/ML API's CDN really sends for a WAV (docs: the API contract).
    scripted.script(Reply(200, body, headers={"Content-Type": "application/octet-stream"}))
    target = tmp_path / "clip"
    StableAudioHook().download_audio(scripted.base_url + "/clip", target)
    assert target.read_bytes() == body


def test_an_empty_answer_is_not_a_clip(scripted, tmp_path: Path) -> None:
    scripted.script(Reply(200, b"", headers={"Content-Type": "audio/wav"}))
    with pytest.raises(StableAudioDownloadError, match="an empty body"):
        StableAudioHook().download_audio(scripted.base_url + "/clip.wav", tmp_path / "clip.wav")
    assert list(tmp_path.iterdir()) == []


# -- bytes and time ----------------------------------------------------------------------------


class EndlessServer:
    """Answers any GET with audio that does not end: ``chunk`` every ``interval`` seconds, without a
    Content-Length, until ``ceiling`` bytes (then it closes) or the client goes away."""

    def __init__(self, *, chunk: bytes = bytes(64 * 1024), interval: float = 0.0, ceiling: int) -> None:
        self.finished = threading.Event()  # sent all of ceiling: nobody cut the body off
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # the body ends when the connection closes

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "audio/wav")
                self.end_headers()
                sent = 0
                try:
                    self.wfile.write(WAV[:44])  # a WAV header, then no end of samples
                    while sent < ceiling:
                        self.wfile.write(chunk)
                        self.wfile.flush()
                        sent += len(chunk)
                        time.sleep(interval)
                except OSError:
                    return  # the client cut it off
                server.finished.set()

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/clip.wav"

    def __enter__(self) -> EndlessServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def test_an_endless_body_is_cut_off_at_the_connections_max_download_bytes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, clock: FakeClock
) -> None:
    with EndlessServer(ceiling=64 * 1024 * 1024) as server:
        set_connection(monkeypatch, host=server.url.rsplit("/", 1)[0], password=API_KEY,
                       extra={"max_download_bytes": 1_000_000})  # fmt: skip
        with pytest.raises(
            StableAudioDownloadError, match=r"runs to more than 1000000 bytes \(the connection's max"
        ):
            StableAudioHook().download_audio(server.url, tmp_path / "clip.wav")
        assert not server.finished.is_set()
    assert clock.sleeps == []
    assert list(tmp_path.iterdir()) == []


def test_a_body_running_past_the_reported_file_size_is_cut_off_there(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, clock: FakeClock
) -> None:
    with EndlessServer(ceiling=64 * 1024 * 1024) as server:
        set_connection(monkeypatch, host=server.url.rsplit("/", 1)[0], password=API_KEY)
        with pytest.raises(StableAudioDownloadError, match=r"more than 5000 bytes \(the file_size the API"):
            StableAudioHook().download_audio(server.url, tmp_path / "clip.wav", expected_size=5000)
        assert not server.finished.is_set()
    assert list(tmp_path.iterdir()) == []


def test_a_content_length_above_the_limit_is_refused_before_the_body_is_read(
    monkeypatch: pytest.MonkeyPatch, scripted, tmp_path: Path, clock: FakeClock
) -> None:
    set_connection(monkeypatch, host=scripted.base_url, password=API_KEY, extra={"max_download_bytes": 4096})
    scripted.script(Reply(200, WAV[:1000], headers={"Content-Type": "audio/wav"}, declared_length=10**12))
    with pytest.raises(
        StableAudioDownloadError, match="its Content-Length, 1000000000000, is more than 4096"
    ):
        StableAudioHook().download_audio(scripted.base_url + "/clip.wav", tmp_path / "clip.wav")
    assert clock.sleeps == []


def test_a_reported_file_size_above_the_limit_is_refused_before_any_request(
    monkeypatch: pytest.MonkeyPatch, scripted, tmp_path: Path
) -> None:
    set_connection(monkeypatch, host=scripted.base_url, password=API_KEY, extra={"max_download_bytes": 4096})
    with pytest.raises(StableAudioDownloadError, match="the API reports 5000 bytes, more than the 4096"):
        StableAudioHook().download_audio(scripted.base_url + "/c.wav", tmp_path / "c.wav", expected_size=5000)
    assert scripted.seen == []


def test_a_body_that_trickles_in_is_cut_off_at_the_time_limit_of_the_whole_download(tmp_path: Path) -> None:
    # A byte every 20 ms never trips the timeout between two chunks (5 s here); the time limit of the
    # whole download does, even while a read is waiting for the next byte.
    with EndlessServer(chunk=b"\x01", interval=0.02, ceiling=3000) as server:
        base = server.url.rsplit("/", 1)[0]
        with pytest.raises(StableAudioDownloadError, match=r"took longer than 0.3s, the limit of a whole"):
            fetch(server.url, tmp_path / "clip.wav", base_url=base, time_limit=0.3)
        assert not server.finished.is_set()  # cut off by the client, not ended by the server
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("value", "expected"),
                         [(None, DEFAULT_MAX_DOWNLOAD_BYTES), ("", DEFAULT_MAX_DOWNLOAD_BYTES), (5_000_000, 5_000_000),
                          ("5000000", 5_000_000), (5e6, 5_000_000)])  # fmt: skip
def test_max_download_bytes_is_a_whole_number_extra(value: object, expected: int) -> None:
    settings = settings_from_connection(
        conn_id="c", host=None, port=None, password="k", extra={"max_download_bytes": value}
    )
    assert settings.max_download_bytes == expected


@pytest.mark.parametrize("value", [0, -1, 1.5, "lots", True, [1]])
def test_a_max_download_bytes_extra_that_is_not_a_size_names_it(value: object) -> None:
    with pytest.raises(StableAudioConfigError, match="invalid 'max_download_bytes' extra"):
        settings_from_connection(
            conn_id="c", host=None, port=None, password="k", extra={"max_download_bytes": value}
        )


# -- API answers are read up to a bound, on the worker and in the triggerer ----------------------

PADDED_POLL = json.dumps({"id": "g", "status": "queued"}).encode() + b" " * (MAX_ANSWER_BYTES + 1)


def test_a_poll_answer_longer_than_the_bound_is_not_read_whole_on_the_worker(scripted) -> None:
    # Valid JSON, but 1 MiB of it is not an answer of the API: read whole, it would be accepted.
    scripted.script(Reply(200, PADDED_POLL))
    with pytest.raises(StableAudioResponseError, match=f"longer than {MAX_ANSWER_BYTES} bytes"):
        StableAudioHook().get_generation("g", max_retries=0)


def test_a_poll_answer_longer_than_the_bound_is_not_read_whole_in_the_triggerer(scripted) -> None:
    scripted.script(Reply(200, PADDED_POLL))

    async def poll() -> None:
        await StableAudioHook().aget_generation("g")

    with pytest.raises(StableAudioResponseError, match=f"longer than {MAX_ANSWER_BYTES} bytes"):
        asyncio.run(poll())


def test_a_submit_answer_longer_than_the_bound_is_an_unknown_outcome(scripted) -> None:
    scripted.script(
        Reply(200, json.dumps({"id": "g", "status": "queued"}).encode() + b" " * MAX_ANSWER_BYTES * 2)
    )
    with pytest.raises(StableAudioSubmissionUnknownError, match="longer than"):
        StableAudioHook().submit_generation(request())
    assert len(scripted.seen) == 1


def test_an_error_body_is_cut_at_the_bound_and_still_reported(scripted) -> None:
    body = json.dumps({"message": "Unauthorized", "requestId": "r-1"}).encode() + b" " * MAX_ANSWER_BYTES
    scripted.script(Reply(401, body))
    with pytest.raises(Exception, match="Unauthorized"):
        StableAudioHook().get_generation("g", max_retries=0)

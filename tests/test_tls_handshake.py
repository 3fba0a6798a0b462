"""A TLS handshake that fails sent nothing: the submit is retried, and fails plainly when it keeps failing.

Real TLS on loopback: a server with a self-signed certificate made here, one that answers a TLS client
with plain text, one that resets the connection mid-handshake. An error once the handshake is done (a
bad record or an abrupt close after the server read the request) may come after the request arrived:
that submit is never sent again.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import socket
import ssl
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from airflow_provider_stableaudio.exceptions import (
    StableAudioConnectionError,
    StableAudioSubmissionUnknownError,
)
from airflow_provider_stableaudio.generation_request import GenerationRequest
from airflow_provider_stableaudio.hooks import base as hook_module
from airflow_provider_stableaudio.hooks.stability import StabilityAudioHook
from airflow_provider_stableaudio.hooks.stable_audio import StableAudioHook
from tests.conftest import API_KEY, set_connection
from tests.fake_clock import FakeClock, fake_clock

RETRIES = 2


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and its key: ``(cert.pem, key.pem)``."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


Behaviour = Callable[[socket.socket, "LoopbackServer"], None]


class LoopbackServer:
    """Accepts TCP connections on 127.0.0.1 and hands each to ``behaviour``; counts them."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.connections = 0
        self.requests: list[bytes] = []  # what a TLS behaviour read once its handshake was done
        self._behaviour = behaviour
        self._listener = socket.create_server(("127.0.0.1", 0))
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self._listener.getsockname()[1]}"

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:  # closed
                return
            self.connections += 1
            try:
                self._behaviour(connection, self)
            except OSError:  # the client gave up on the handshake: expected here
                pass
            finally:
                connection.close()

    def close(self) -> None:
        self._listener.close()


def server_context(cert: tuple[Path, Path]) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*cert)
    return context


def untrusted(cert: tuple[Path, Path]) -> Behaviour:
    """A TLS server whose certificate the client does not trust: the handshake fails on verification."""
    context = server_context(cert)
    return lambda connection, server: context.wrap_socket(connection, server_side=True).close()


def handshake_then(cert: tuple[Path, Path], then: Callable[[socket.socket], None]) -> Behaviour:
    """Complete the handshake, read the request, then ``then(the raw socket under TLS)``."""
    context = server_context(cert)

    def behaviour(connection: socket.socket, server: LoopbackServer) -> None:
        with context.wrap_socket(connection, server_side=True) as secure:
            server.requests.append(secure.recv(65536))
            with socket.socket(fileno=os.dup(secure.fileno())) as raw:  # writes here bypass TLS
                then(raw)

    return behaviour


def answer_plain_text(connection: socket.socket, server: LoopbackServer) -> None:
    connection.recv(4096)  # the ClientHello
    connection.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n" * 4)


def reset_mid_handshake(connection: socket.socket, server: LoopbackServer) -> None:
    connection.recv(4096)  # the ClientHello
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close sends RST


def write_a_bad_record(raw: socket.socket) -> None:
    raw.sendall(b"\x17\x03\x03\x00\x20" + b"\x00" * 32)  # application data that fails to decrypt


def close_without_answer(raw: socket.socket) -> None:
    raw.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    return fake_clock(monkeypatch, hook_module)


@pytest.fixture
def serve(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., LoopbackServer]]:
    servers: list[LoopbackServer] = []

    def start(behaviour: Behaviour, conn_id: str = "stableaudio_default") -> LoopbackServer:
        server = LoopbackServer(behaviour)
        servers.append(server)
        conn_type = "stability" if conn_id == "stability_default" else "stableaudio"
        # A budget far above the retries' pace: the only waits these tests count are the backoffs
        # (Stability's default of 10 a second would add a wait after any backoff under 0.1 s).
        set_connection(
            monkeypatch,
            conn_id,
            conn_type=conn_type,
            host=server.url,
            password=API_KEY,
            extra={"max_requests_per_second": 1000},
        )
        return server

    yield start
    for server in servers:
        server.close()


def aiml_submit() -> None:
    StableAudioHook(max_retries=RETRIES).submit_generation(
        GenerationRequest.build(prompt="a soft harp arpeggio", seconds_total=2)
    )


def stability_call(tmp_path: Path) -> None:
    request = GenerationRequest.build(
        "stable-audio-2.5", prompt="a warm pad", duration=3, output_format="wav"
    )
    StabilityAudioHook(max_retries=RETRIES).generate_to(request, tmp_path / "clip.wav", timeout=60)


def assert_retried_and_failed_plainly(
    caught: pytest.ExceptionInfo, server: LoopbackServer, clock: FakeClock
) -> None:
    message = str(caught.value)
    assert caught.value.request_sent is False
    assert "before the request was sent" in message
    assert "pay twice" not in message
    assert "not sent again" not in message
    assert server.connections == RETRIES + 1
    assert len(clock.sleeps) == RETRIES  # a backoff before each retry
    assert server.requests == []  # no request ever got past a handshake


@pytest.mark.parametrize(
    ("behaviour", "words"),
    [(untrusted, "CERTIFICATE_VERIFY_FAILED"),
     (lambda cert: answer_plain_text, "SSLError"),
     (lambda cert: reset_mid_handshake, "reset by peer")],
    ids=["untrusted-certificate", "server-not-speaking-tls", "reset-mid-handshake"],
)  # fmt: skip
def test_a_submit_whose_tls_handshake_fails_is_retried_then_fails_saying_nothing_was_sent(
    serve, certificate, clock: FakeClock, behaviour, words: str
) -> None:
    server = serve(behaviour(certificate))
    with pytest.raises(StableAudioConnectionError, match=words) as caught:
        aiml_submit()
    assert_retried_and_failed_plainly(caught, server, clock)


def test_a_stability_call_whose_certificate_is_untrusted_is_retried_and_stores_nothing(
    serve, certificate, clock: FakeClock, tmp_path: Path
) -> None:
    server = serve(untrusted(certificate), "stability_default")
    target = tmp_path / "out"
    target.mkdir()
    with pytest.raises(StableAudioConnectionError, match="CERTIFICATE_VERIFY_FAILED") as caught:
        stability_call(target)
    assert_retried_and_failed_plainly(caught, server, clock)
    assert list(target.iterdir()) == []


@pytest.mark.parametrize(
    "then", [write_a_bad_record, close_without_answer], ids=["bad-tls-record", "closed-without-answer"]
)
def test_a_failure_after_the_handshake_may_have_paid_and_is_never_sent_again(
    serve, certificate, clock: FakeClock, monkeypatch: pytest.MonkeyPatch, then
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certificate[0]))  # this time the client trusts it
    server = serve(handshake_then(certificate, then))
    with pytest.raises(StableAudioSubmissionUnknownError, match="not sent again") as caught:
        aiml_submit()
    assert "pay twice" in str(caught.value)
    assert server.connections == 1
    assert len(server.requests) == 1
    assert server.requests[0].startswith(b"POST /v2/generate/audio ")
    assert clock.sleeps == []

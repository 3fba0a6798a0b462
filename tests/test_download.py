"""The download: streamed to a temporary file, checked, moved into place whole or not at all."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from airflow_provider_stableaudio.exceptions import StableAudioDownloadError
from airflow_provider_stableaudio.hooks.stable_audio import StableAudioHook
from tests.hooks.test_stable_audio_hook import request
from tests.scripted_server import Reply


def test_download_sends_no_key(scripted, tmp_path: Path) -> None:
    scripted.script(Reply(200, b"RIFF1234"))
    StableAudioHook().download_audio(scripted.base_url + "/files/x.wav", tmp_path / "x.wav")
    assert "Authorization" not in scripted.seen[0].headers


def test_downloads_ask_for_the_bytes_as_they_are(scripted, tmp_path: Path) -> None:
    scripted.script(Reply(200, b"RIFF...."))
    StableAudioHook().download_audio(scripted.base_url + "/f.wav", tmp_path / "f.wav")
    assert scripted.seen[0].headers["Accept-Encoding"] == "identity"


@pytest.mark.parametrize(
    ("reply", "words"),
    [(Reply(404, b"gone"), "HTTP 404 (the URL may have expired)"),
     (Reply(200, b"RIFF" + b"x" * 50, declared_length=200), "Connection broken: IncompleteRead"),
     (Reply(200, b"RIFF" + b"x" * 96), "got 100 bytes but file_size says 5000")],
)  # fmt: skip
def test_failed_download_leaves_nothing(scripted, tmp_path: Path, reply: Reply, words: str) -> None:
    scripted.script(reply)
    target = tmp_path / "clip.wav"
    with pytest.raises(StableAudioDownloadError, match=words.replace("(", r"\(").replace(")", r"\)")):
        StableAudioHook().download_audio(scripted.base_url + "/f.wav", target, expected_size=5000)
    assert list(tmp_path.iterdir()) == []


def test_download_replaces_an_existing_file_whole(connection, tmp_path: Path) -> None:
    hook = StableAudioHook()
    done = hook.wait_for_generation(hook.submit_generation(request()).id, poll_interval=0.1, timeout=10)
    target = tmp_path / "clip.wav"
    target.write_bytes(b"old")
    hook.download_audio(done.audio_file.url, target)  # type: ignore[union-attr]
    served = connection.ledger()["generations"][0]["bytes_served"]
    assert target.stat().st_size == served
    assert hashlib.sha256(target.read_bytes()).hexdigest() != hashlib.sha256(b"old").hexdigest()

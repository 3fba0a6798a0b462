"""Edge cases found in review: unknown submissions fail without retry, odd bodies, modes, expiry."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException

from airflow_provider_stableaudio.api_errors import MAX_RETRY_AFTER, parse_retry_after
from airflow_provider_stableaudio.exceptions import StableAudioDownloadError
from airflow_provider_stableaudio.generation import GenerationRequest
from airflow_provider_stableaudio.hooks.stable_audio import StableAudioHook
from airflow_provider_stableaudio.operators.stable_audio import STATE_KEY
from airflow_provider_stableaudio.responses import GenerationState
from tests.operators.test_reattach import MemoryStore, a_try
from tests.operators.test_stable_audio_operator import context, operator
from tests.scripted_server import Reply


def test_unknown_submission_outcome_fails_the_task_without_retries(scripted) -> None:
    scripted.script(Reply(drop=True))
    with pytest.raises(AirflowFailException, match="not sent again"):
        operator().execute(context())
    assert len(scripted.seen) == 1


def test_accepted_id_with_an_unreadable_status_is_kept(scripted) -> None:
    scripted.script(Reply(200, {"generation_id": "old-style-id"}))
    generation = StableAudioHook().submit_generation(GenerationRequest.build(prompt="x"))
    assert (generation.id, generation.state) == ("old-style-id", GenerationState.PENDING)


def test_downloads_ask_for_the_bytes_as_they_are(scripted, tmp_path: Path) -> None:
    scripted.script(Reply(200, b"RIFF...."))
    StableAudioHook().download_audio(scripted.base_url + "/f.wav", tmp_path / "f.wav")
    assert scripted.seen[0].headers["Accept-Encoding"] == "identity"


def test_downloaded_file_gets_the_usual_mode(connection, tmp_path: Path) -> None:
    target = tmp_path / "clip.wav"
    operator(deferrable=False, output_path=str(target)).execute(context())
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask


def test_a_404_download_keeps_the_generation_for_the_next_try(connection, tmp_path: Path) -> None:
    store = MemoryStore()
    connection.set_generation_seconds(0)
    connection.set_faults(rate_download_404=1.0)
    with pytest.raises(StableAudioDownloadError, match="may have expired") as caught:
        operator(deferrable=False, output_path=str(tmp_path / "c.wav")).execute(a_try(store))
    assert caught.value.url_expired
    # A CDN 404 may be passing: the next try downloads the same clip again rather than pay anew.
    connection.clear_faults()
    operator(deferrable=False, output_path=str(tmp_path / "c.wav")).execute(a_try(store))
    assert STATE_KEY in store.values
    assert len(connection.ledger()["generations"]) == 1
    assert (tmp_path / "c.wav").exists()


def test_connection_test_needs_the_apis_answer(scripted) -> None:
    scripted.script(Reply(404, b"<html>Not Found</html>", headers={"Content-Type": "text/html"}))
    ok, message = StableAudioHook().test_connection()
    assert not ok
    assert "without the API's JSON body" in message


@pytest.mark.parametrize(("value", "expected"), [("inf", None), ("nan", None), ("99999", MAX_RETRY_AFTER)])
def test_retry_after_is_finite_and_bounded(value: str, expected: float | None) -> None:
    assert parse_retry_after(value) == expected

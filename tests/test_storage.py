"""``output_path`` as a local path, a ``file://`` ObjectStoragePath or an fsspec URI (``memory://``)."""

from __future__ import annotations

import hashlib
import os
import stat
import warnings
from pathlib import Path

import fsspec
import pytest
from airflow.providers.common.compat.sdk import AirflowFailException, ObjectStoragePath
from fsspec.implementations.memory import MemoryFileSystem

from airflow_provider_stableaudio import download
from airflow_provider_stableaudio.exceptions import (
    StableAudioConfigError,
    StableAudioDownloadError,
    StableAudioResultGoneError,
    StableAudioStorageError,
)
from airflow_provider_stableaudio.hooks.stable_audio import StableAudioHook
from airflow_provider_stableaudio.storage import prepare
from tests.fake_clock import fake_clock
from tests.operators.test_stable_audio_operator import context, operator


@pytest.fixture
def memory_fs():
    fs = fsspec.filesystem("memory")
    fs.store.clear()
    fs.pseudo_dirs.clear()
    fs.pseudo_dirs.append("")
    yield fs
    fs.store.clear()


def served_sha256(emulator) -> str:
    (generation,) = emulator.ledger()["generations"]
    return generation["sha256"]


def test_operator_downloads_to_memory_uri(connection, memory_fs) -> None:
    ctx = context()
    operator(deferrable=False, output_path="memory://clips/2026/clip.wav").execute(ctx)
    assert ctx["ti"].xcom("local_path") == "memory://clips/2026/clip.wav"
    assert hashlib.sha256(memory_fs.cat("/clips/2026/clip.wav")).hexdigest() == served_sha256(connection)
    assert memory_fs.ls("/clips/2026", detail=False) == ["/clips/2026/clip.wav"]  # no temporary object left


def test_operator_downloads_to_object_storage_path(connection, tmp_path: Path) -> None:
    ctx = context()
    target = ObjectStoragePath(f"file://{tmp_path}/sub/clip.wav")
    operator(deferrable=False, output_path=target).execute(ctx)
    assert ctx["ti"].xcom("local_path") == str(tmp_path / "sub" / "clip.wav")
    assert hashlib.sha256((tmp_path / "sub" / "clip.wav").read_bytes()).hexdigest() == served_sha256(
        connection
    )


def test_failed_download_leaves_nothing_in_object_storage(
    connection, memory_fs, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_clock(monkeypatch, download)  # the retries' waits, skipped
    connection.set_faults(rate_download_truncated=1.0)
    hook = StableAudioHook()
    generation = operator(deferrable=False, wait_for_completion=False).execute(context())
    done = hook.wait_for_generation(generation, poll_interval=0.1, timeout=10)
    with pytest.raises(StableAudioDownloadError):
        hook.download_audio(done.audio_file.url, "memory://clips/cut.wav")  # type: ignore[union-attr]
    assert not memory_fs.exists("/clips/cut.wav")
    assert memory_fs.find("/clips") == []


def test_streams_in_chunks_never_whole(connection, memory_fs, monkeypatch: pytest.MonkeyPatch) -> None:
    writes: list[int] = []
    original = fsspec.implementations.memory.MemoryFile.write

    def counting_write(self, data):  # type: ignore[no-untyped-def]
        writes.append(len(data))
        return original(self, data)

    monkeypatch.setattr(fsspec.implementations.memory.MemoryFile, "write", counting_write)
    operator(deferrable=False, seconds_total=10, output_path="memory://clips/long.wav").execute(context())
    assert len(writes) > 1
    assert max(writes) <= 1024 * 1024


def test_unknown_scheme_fails_before_any_request(connection) -> None:
    with pytest.raises(AirflowFailException, match="no filesystem for this scheme") as caught:
        operator(output_path="nosuchscheme://bucket/clip.wav").execute(context())
    assert isinstance(caught.value.__cause__, StableAudioConfigError)
    assert connection.ledger()["requests"] == []


def test_prepare_resolves_each_form(tmp_path: Path) -> None:
    assert prepare(str(tmp_path / "a.wav")) == tmp_path / "a.wav"
    assert prepare(f"file://{tmp_path}/b.wav") == tmp_path / "b.wav"
    fs, path = prepare("memory://bucket/c.wav")  # type: ignore[misc]
    assert (fs.protocol[0] if isinstance(fs.protocol, tuple) else fs.protocol, path) == (
        "memory",
        "/bucket/c.wav",
    )


def _partial_file_of_a_killed_writer(target: Path) -> Path:
    """A temporary file as a write of ``target`` leaves it when SIGKILL ends it mid-way."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import os, signal, sys
        from pathlib import Path
        from airflow_provider_stableaudio.storage import staged_write

        with staged_write(Path(sys.argv[1])) as out:
            out.write(b"RIFF half a clip")
            os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    subprocess.run([sys.executable, "-c", script, str(target)], check=False, timeout=120)
    (part,) = target.parent.glob(f".{target.name}.*.part")
    return part


def test_next_write_removes_what_a_killed_write_left(tmp_path: Path) -> None:
    from airflow_provider_stableaudio.storage import staged_write

    target = tmp_path / "clip_1.wav"
    stale = _partial_file_of_a_killed_writer(target)
    assert not target.exists()
    with staged_write(target) as out:
        out.write(b"whole clip")
    assert target.read_bytes() == b"whole clip"
    assert not stale.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip_1.wav"]


def test_next_write_keeps_the_file_of_a_write_still_in_progress(tmp_path: Path) -> None:
    from airflow_provider_stableaudio.storage import staged_write

    target = tmp_path / "clip.wav"
    other = tmp_path / "other.wav"
    with staged_write(target) as first:
        first.write(b"still coming")
        (in_progress,) = tmp_path.glob(".clip.wav.*.part")
        with staged_write(target) as second:  # e.g. a second task writing the same target
            second.write(b"second")
        with staged_write(other) as third:
            third.write(b"other")
        assert in_progress.exists()  # a live writer's file is never taken away
    assert target.read_bytes() == b"still coming"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.wav", "other.wav"]


def test_on_kill_removes_the_partial_download(tmp_path: Path) -> None:
    from airflow_provider_stableaudio.sensors.stable_audio import StableAudioGenerationSensor
    from airflow_provider_stableaudio.storage import staged_write

    target = tmp_path / "clip.wav"
    for task in (operator(), StableAudioGenerationSensor(task_id="wait", generation_id="g")):
        parts_seen = []

        def killed_mid_download(task=task, parts_seen=parts_seen) -> None:
            with staged_write(target) as out:
                out.write(b"part of a clip")
                parts_seen.append(len(list(tmp_path.glob(".clip.wav.*.part"))))
                task.on_kill()  # what Airflow calls on SIGTERM, before it kills the task
                parts_seen.append(len(list(tmp_path.glob(".clip.wav.*.part"))))

        with pytest.raises(StableAudioStorageError):
            killed_mid_download()
        assert parts_seen == [1, 0]
        assert list(tmp_path.iterdir()) == []


def test_downloaded_file_gets_the_usual_mode(connection, tmp_path: Path) -> None:
    target = tmp_path / "clip.wav"
    operator(deferrable=False, output_path=str(target)).execute(context())
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask


# -- a store that raises its own errors (not OSError), as botocore and gcsfs do


class StoreOwnError(Exception):
    """What a store's client raises of its own (botocore's NoCredentialsError is no OSError)."""


class StandInStore(MemoryFileSystem):
    """``standin://``: memory, until told to fail; probes pass, the clip's writes fail ``failures`` times."""

    protocol = "standin"
    failures = 0

    @classmethod
    def _strip_protocol(cls, path):  # type: ignore[no-untyped-def]
        return super()._strip_protocol(str(path).replace("standin://", "memory://", 1))

    def _open(self, path, mode="rb", **kwargs):  # type: ignore[no-untyped-def]
        if "w" in mode and path.endswith(".part") and StandInStore.failures:
            StandInStore.failures -= 1
            raise StoreOwnError("the store's client gave up")
        return super()._open(path, mode=mode, **kwargs)


@pytest.fixture
def standin(memory_fs, monkeypatch: pytest.MonkeyPatch):
    from fsspec.registry import _registry

    monkeypatch.setitem(_registry, "standin", StandInStore)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "UPath 'standin' filesystem not explicitly implemented")
        yield StandInStore
    StandInStore.failures = 0


def stored_files(memory_fs) -> list[str]:
    return memory_fs.find("/")


def test_a_store_error_of_its_own_on_a_download_is_retried_in_the_task(
    connection, standin, memory_fs, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = fake_clock(monkeypatch, download)
    standin.failures = 1
    ctx = context()
    operator(deferrable=False, output_path="standin://clips/clip.wav").execute(ctx)
    assert hashlib.sha256(memory_fs.cat("/clips/clip.wav")).hexdigest() == served_sha256(connection)
    assert len(clock.sleeps) == 1  # one more attempt, inside the task
    assert len(connection.ledger()["generations"]) == 1
    assert stored_files(memory_fs) == ["/clips/clip.wav"]


def test_a_store_that_keeps_failing_fails_the_download_for_a_task_retry(
    connection, standin, memory_fs, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_clock(monkeypatch, download)
    standin.failures = 100
    with pytest.raises(
        StableAudioDownloadError, match=r"StoreOwnError: the store's client gave up \(gave up"
    ):
        operator(deferrable=False, output_path="standin://clips/clip.wav").execute(context())
    assert stored_files(memory_fs) == []
    assert len(connection.ledger()["generations"]) == 1  # a task retry re-attaches to it (Airflow 3.3+)


def stability_operator(**kwargs):  # type: ignore[no-untyped-def]
    from airflow_provider_stableaudio.operators.stable_audio import StableAudioGenerateOperator

    return StableAudioGenerateOperator(
        task_id="generate",
        conn_id="stability_default",
        poll_interval=0.1,
        prompt="a slow cello drone",
        duration=2,
        output_format="wav",
        output_path="standin://clips/clip.wav",
        **kwargs,
    )


@pytest.mark.parametrize("model", ["stable-audio-2.5", "stable-audio-3"], ids=["synchronous", "served once"])
def test_a_stability_answer_the_store_refuses_fails_without_retries_saying_it_was_paid(
    stability, standin, memory_fs, monkeypatch: pytest.MonkeyPatch, model: str
) -> None:
    from tests.operators.test_stability_operator import served_once

    served_once(stability, monkeypatch)
    standin.failures = 1
    with pytest.raises(AirflowFailException, match="The generation was paid for") as caught:
        stability_operator(model=model).execute(context())
    assert isinstance(caught.value.__cause__, StableAudioResultGoneError)
    assert "StoreOwnError: the store's client gave up" in str(caught.value)
    assert stability.ledger()["stability"]["submit_count"] == 1
    assert stored_files(memory_fs) == []

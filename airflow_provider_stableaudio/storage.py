"""Where a downloaded clip goes: a local path, a URI or an ``ObjectStoragePath``, written whole or not at all.

Local files are staged with ``mkstemp`` beside the target and moved with ``os.replace`` (atomic); the
temporary file of a write that was killed is removed on kill (``on_kill``) or, after a SIGKILL, by the
next write of the same target. Any other store is reached through fsspec: a temporary object beside
the target, moved into place when complete, removed on failure. A URI whose scheme Airflow's
``ObjectStoragePath`` knows uses it (so the scheme's Airflow connection applies); other schemes go to
fsspec directly (``memory://``, or any implementation the user installed).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import glob
import os
import secrets
import tempfile
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

from airflow_provider_stableaudio.exceptions import StableAudioConfigError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import TypeAlias

    from airflow.sdk import ObjectStoragePath

    #: What ``output_path`` accepts: a local path, a URI such as ``s3://bucket/clip.wav``, or an
    #: ``airflow.sdk.ObjectStoragePath``. Templated values are checked at run time by :func:`resolve`.
    OutputPath: TypeAlias = str | os.PathLike[str] | ObjectStoragePath

_LOCAL_PROTOCOLS = ("", "file", "local")


def _is_uri(value: str) -> bool:
    return "://" in value and not value.startswith("file://")


def resolve(output_path: OutputPath) -> Path | tuple[Any, str]:
    """A local ``Path``, or ``(fsspec filesystem, path)`` for any other store.

    :raises StableAudioConfigError: the value is not a path, or no filesystem serves its scheme.
    """
    protocol = getattr(output_path, "protocol", None)
    # Before the Path check: with universal-pathlib 0.2 (Airflow 3.1) an ObjectStoragePath is a Path.
    if protocol is not None and hasattr(output_path, "fs"):  # an ObjectStoragePath
        storage_path = cast("ObjectStoragePath", output_path)
        if protocol in _LOCAL_PROTOCOLS:
            return Path(storage_path.path)
        return storage_path.fs, storage_path.path
    if isinstance(output_path, Path):
        return output_path.expanduser()
    if isinstance(output_path, str):
        if not output_path.strip():
            raise StableAudioConfigError(f"output_path must be a file path or URI, got {output_path!r}")
        if not _is_uri(output_path):
            return Path(output_path.removeprefix("file://")).expanduser()
        return _filesystem_for_uri(output_path)
    if isinstance(output_path, os.PathLike):
        return Path(output_path)
    raise StableAudioConfigError(
        f"output_path must be a path, a URI or an ObjectStoragePath, got {output_path!r} "
        f"({type(output_path).__name__})"
    )


def _filesystem_for_uri(uri: str) -> tuple[Any, str]:
    from airflow.providers.common.compat.sdk import ObjectStoragePath

    try:
        path = ObjectStoragePath(uri)
        return path.fs, path.path
    except ValueError:
        pass  # a scheme Airflow has no filesystem for: ask fsspec itself
    import fsspec.core

    try:
        return fsspec.core.url_to_fs(uri)
    except (ImportError, ValueError) as exc:
        raise StableAudioConfigError(
            f"output_path {uri!r}: no filesystem for this scheme ({exc}); install the fsspec "
            "implementation or the Airflow provider for it"
        ) from exc


def prepare(output_path: OutputPath) -> Path | tuple[Any, str]:
    """Resolve ``output_path`` and create its folder, before anything is paid for.

    :raises StableAudioConfigError: it names a folder, or its folder cannot be created.
    """
    target = resolve(output_path)
    if isinstance(target, Path):
        if target.is_dir():
            raise StableAudioConfigError(
                f"output_path {str(target)!r} is a folder: give the path of the file to write"
            )
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StableAudioConfigError(
                f"output_path folder {str(target.parent)!r} cannot be created: {exc.strerror or exc}"
            ) from exc
    return target


def describe(output_path: OutputPath, target: Path | tuple[Any, str]) -> str:
    """The location as the user wrote it: a local path, or the URI."""
    return str(target) if isinstance(target, Path) else str(output_path)


@functools.cache
def _umask() -> int:
    """The process's umask (read once: reading it means setting it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# Local temporary files this process is writing, for discard_staged_files().
_STAGED: set[str] = set()


def _part_prefix(target: Path) -> str:
    return f".{target.name}."


def discard_staged_files() -> None:
    """Remove the temporary files of every local write in progress in this process.

    For ``on_kill``: Airflow sends SIGTERM before it kills a task, and a download cut off by the
    SIGKILL that follows must not leave its partial file behind. The interrupted write then fails
    (its file is gone) and puts nothing at its target.
    """
    for tmp_name in list(_STAGED):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)


def _remove_stale_parts(target: Path) -> None:
    """Remove the temporary files that killed earlier writes of ``target`` left behind.

    Every writer holds an exclusive ``flock`` on its temporary file until the file is in place, and
    the kernel releases it when the writer dies however it dies: a file nobody holds is stale.
    """
    for part in target.parent.glob(f"{glob.escape(_part_prefix(target))}*.part"):
        try:
            fd = os.open(part, os.O_RDONLY)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            continue  # a live writer holds it
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(part)
        finally:
            os.close(fd)


@contextlib.contextmanager
def staged_write(target: Path | tuple[Any, str]) -> Iterator[IO[bytes]]:
    """Yield a file to write; it appears at ``target`` only if the block completes."""
    if isinstance(target, Path):
        _remove_stale_parts(target)
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=_part_prefix(target), suffix=".part")
        _STAGED.add(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                fcntl.flock(fd, fcntl.LOCK_EX)  # held until the file is in place: see _remove_stale_parts
                yield out
                out.flush()
                # mkstemp makes the file private (0600); the clip gets the mode any new file would.
                os.fchmod(fd, 0o666 & ~_umask())
                os.replace(tmp_name, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
            raise
        finally:
            _STAGED.discard(tmp_name)
        return
    fs, path = target
    parent, _, name = path.rpartition("/")
    tmp_path = f"{parent}/.{name}.{secrets.token_hex(6)}.part"
    fs.makedirs(parent, exist_ok=True)
    try:
        with fs.open(tmp_path, "wb") as out:
            yield out
        fs.mv(tmp_path, path)
    except BaseException:
        with contextlib.suppress(Exception):
            fs.rm(tmp_path)
        raise

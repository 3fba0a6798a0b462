"""Where a downloaded clip goes: a local path, a URI or an ``ObjectStoragePath``, written whole or not at all.

Local files are staged with ``mkstemp`` beside the target and moved with ``os.replace`` (atomic); the
temporary file of a write that was killed is removed on kill (``on_kill``) or, after a SIGKILL, by the
next write of the same target. Any other store is reached through fsspec: checked with a small probe
object before anything is paid for, then a temporary object beside the target, moved into place when
complete; on failure or kill its upload is aborted (where the filesystem can: s3fs's multipart
upload) and the temporary object removed. A URI whose scheme Airflow's ``ObjectStoragePath`` knows
uses it (so the scheme's Airflow connection applies); other schemes go to fsspec directly
(``memory://``, or any implementation the user installed). Whatever a store raises while writing is
:class:`StableAudioStorageError`: "could not store".
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
from typing import TYPE_CHECKING, Any, cast

from airflow_provider_stableaudio.exceptions import StableAudioConfigError, StableAudioStorageError

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


def prepare(output_path: OutputPath, *, probe: bool = True) -> Path | tuple[Any, str]:
    """Resolve ``output_path`` and check it can be written, before anything is paid for.

    A local folder is created. Any other store gets a small probe object beside the target, written
    and removed (with ``probe``): missing credentials, a missing bucket or a refused write fail here,
    not after a paid clip arrived. A bucket (or the top folder of the store) is never created.

    :param probe: ``False`` skips the probe object (a store already probed by this task).
    :raises StableAudioConfigError: it names a folder; its folder cannot be created; the store has
        no such bucket, refuses the write or has no credentials for it: every try would fail so.
    :raises StableAudioStorageError: the store failed in another way (it may work on a later try).
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
    elif probe:
        try:
            _probe(*target)
        except Exception as exc:
            where = f"output_path {describe(output_path, target)!r}"
            if isinstance(exc, StableAudioConfigError):
                raise StableAudioConfigError(f"{where}: {exc}") from exc
            error = StableAudioConfigError if _refused(exc) else StableAudioStorageError
            raise error(f"{where} cannot be written: {type(exc).__name__}: {exc}") from exc
    return target


def _probe(fs: Any, path: str) -> None:
    """Write and remove a small object beside ``path``; create its folder only if the store needs one."""
    parent, _, name = path.rpartition("/")
    probe = f"{parent}/.{name}.{secrets.token_hex(6)}.probe"
    try:
        _write_probe(fs, probe)
    except FileNotFoundError:
        # A store with real folders (sftp, ...) needs the folder; an object store that says "not
        # found" is missing its bucket, and makedirs would create one: never that.
        top = parent[: len(parent) - len(parent.lstrip("/"))] + parent.lstrip("/").split("/", 1)[0]
        if not top.strip("/") or not fs.exists(top):
            raise StableAudioConfigError(f"{top!r} does not exist (a bucket is never created)") from None
        fs.makedirs(parent, exist_ok=True)
        _write_probe(fs, probe)


def _write_probe(fs: Any, probe: str) -> None:
    with fs.open(probe, "wb") as out:
        out.write(b"probe")
    fs.rm(probe)


# What a store says when every try would fail the same way: the path or bucket does not exist, or
# the write is refused. Credential errors are recognised by name: botocore's NoCredentialsError and
# PartialCredentialsError, google-auth's DefaultCredentialsError, azure's ClientAuthenticationError.
_REFUSALS = (FileNotFoundError, PermissionError, NotADirectoryError, IsADirectoryError)


def _refused(exc: BaseException) -> bool:
    names = {cls.__name__ for cls in type(exc).__mro__}
    return isinstance(exc, _REFUSALS) or any("Credentials" in n or "Authentication" in n for n in names)


def describe(output_path: OutputPath, target: Path | tuple[Any, str]) -> str:
    """The location as the user wrote it: a local path, or the URI."""
    return str(target) if isinstance(target, Path) else str(output_path)


@functools.cache
def _umask() -> int:
    """The process's umask (read once: reading it means setting it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _part_prefix(name: str) -> str:
    return f".{name}."


class _Staging:
    """One write in progress: bytes go to a temporary file or object, moved to the target when whole.

    Every failure of the store itself (opening, writing, moving into place) is raised as
    :class:`StableAudioStorageError`, whatever the filesystem raised; an error of the caller's
    block (a body that broke off) passes through unchanged.
    """

    def write(self, data: bytes) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        """Move the written bytes into place."""
        raise NotImplementedError

    def discard(self) -> None:
        """Remove what was written, where the store allows; never raises (safe in a signal handler)."""
        raise NotImplementedError

    def release(self) -> None:
        """Let go of what the write holds, whatever became of it."""


class _LocalStaging(_Staging):
    def __init__(self, target: Path) -> None:
        _remove_stale_parts(target)
        self.target = target
        fd, self.tmp_name = tempfile.mkstemp(
            dir=target.parent, prefix=_part_prefix(target.name), suffix=".part"
        )
        self.out = os.fdopen(fd, "wb")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # held until the file is in place: see _remove_stale_parts
        except BaseException:
            self.discard()
            self.release()
            raise

    def write(self, data: bytes) -> None:
        self.out.write(data)

    def finish(self) -> None:
        self.out.flush()
        # mkstemp makes the file private (0600); the clip gets the mode any new file would.
        os.fchmod(self.out.fileno(), 0o666 & ~_umask())
        os.replace(self.tmp_name, self.target)

    def discard(self) -> None:
        # Unlink only: on_kill calls this from a signal handler, maybe in the middle of a write
        # to this file (closing it there would be a reentrant call); release() closes it.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.tmp_name)

    def release(self) -> None:
        with contextlib.suppress(OSError):
            self.out.close()


class _RemoteStaging(_Staging):
    def __init__(self, fs: Any, path: str) -> None:
        parent, _, name = path.rpartition("/")
        self.fs, self.path = fs, path
        self.tmp_path = f"{parent}/{_part_prefix(name)}{secrets.token_hex(6)}.part"
        self.discarded = False
        self.out = fs.open(self.tmp_path, "wb")

    def write(self, data: bytes) -> None:
        self._check()
        self.out.write(data)

    def finish(self) -> None:
        self._check()
        self.out.close()  # the upload completes here: the temporary object exists from now on
        self._check()
        self.fs.mv(self.tmp_path, self.path)

    def _check(self) -> None:
        if self.discarded:
            raise StableAudioStorageError("the write was discarded: the task is being stopped")

    def discard(self) -> None:
        self.discarded = True
        # Never close an unfinished file: closing uploads what it holds. discard() aborts an open
        # multipart upload (s3fs) or a resumable one (gcsfs); marked closed, the file's __del__
        # uploads nothing either.
        with contextlib.suppress(Exception):
            self.out.discard()
        if isinstance(self.out, _buffered_file_class()):
            self.out.closed = True
        else:  # a file without buffering (memory, sftp): what it wrote is removed below
            with contextlib.suppress(Exception):
                self.out.close()
        with contextlib.suppress(Exception):
            # Only what exists: in a versioned bucket, deleting nothing still adds a delete marker.
            if self.fs.exists(self.tmp_path):
                self.fs.rm(self.tmp_path)


@functools.cache
def _buffered_file_class() -> type[Any]:
    from fsspec.spec import AbstractBufferedFile

    return AbstractBufferedFile


# The writes in progress in this process, for discard_staged_files().
_STAGED: set[_Staging] = set()


def discard_staged_files() -> None:
    """Remove what every write in progress in this process has written so far.

    For ``on_kill``: Airflow sends SIGTERM before it kills a task, and a download cut off by the
    SIGKILL that follows must not leave its partial file behind. A local temporary file is removed;
    an object store's upload is aborted and its temporary object removed. The interrupted write then
    fails and puts nothing at its target.
    """
    for staging in list(_STAGED):
        staging.discard()


def _remove_stale_parts(target: Path) -> None:
    """Remove the temporary files that killed earlier writes of ``target`` left behind.

    Every writer holds an exclusive ``flock`` on its temporary file until the file is in place, and
    the kernel releases it when the writer dies however it dies: a file nobody holds is stale.
    """
    for part in target.parent.glob(f"{glob.escape(_part_prefix(target.name))}*.part"):
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


class _StagedFile:
    """What :func:`staged_write` yields: ``write`` only, failures of the store as
    :class:`StableAudioStorageError`."""

    def __init__(self, staging: _Staging) -> None:
        self._staging = staging

    def write(self, data: bytes) -> None:
        with _store_errors():
            self._staging.write(data)


@contextlib.contextmanager
def _store_errors() -> Iterator[None]:
    try:
        yield
    except StableAudioStorageError:
        raise
    except Exception as exc:
        raise StableAudioStorageError(f"{type(exc).__name__}: {exc}") from exc


@contextlib.contextmanager
def staged_write(target: Path | tuple[Any, str]) -> Iterator[_StagedFile]:
    """Yield a file to write; it appears at ``target`` (from :func:`prepare`) only if the block completes.

    :raises StableAudioStorageError: the store failed, whatever its filesystem raised.
    """
    with _store_errors():
        staging: _Staging = _LocalStaging(target) if isinstance(target, Path) else _RemoteStaging(*target)
    _STAGED.add(staging)
    try:
        yield _StagedFile(staging)
        with _store_errors():
            staging.finish()
    except BaseException:
        staging.discard()
        raise
    finally:
        _STAGED.discard(staging)
        staging.release()

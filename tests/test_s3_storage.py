"""``output_path`` and ``init_audio`` on real object storage: S3's protocol, served by moto on loopback.

moto runs in server mode (a real HTTP endpoint on 127.0.0.1, a free port) and s3fs/botocore talk to
it as they would to S3. Nothing here may reach AWS: the endpoint is set explicitly, the credentials
are fake, the instance metadata service is switched off (``AWS_EC2_METADATA_DISABLED``), no AWS
config or credentials file is read, and a guard refuses (and records) every name lookup and
connection that is not loopback, before a packet is sent.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException, ObjectStoragePath

from airflow_provider_stableaudio.emulator.audio import synthesize_wav
from airflow_provider_stableaudio.exceptions import StableAudioConfigError, StableAudioStorageError
from airflow_provider_stableaudio.storage import staged_write
from tests.conftest import set_connection
from tests.loopback_guard import LoopbackGuard
from tests.operators.test_stable_audio_operator import context, operator

ROOT = Path(__file__).resolve().parent.parent
BUCKET = "clips"
MiB = 1024 * 1024
# Anything that would send botocore elsewhere than the test's endpoint and keys.
AWS_VARIABLES_UNSET = (
    "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_ENDPOINT_URL_S3", "AWS_CA_BUNDLE",
)  # fmt: skip


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def guard() -> Iterator[LoopbackGuard]:
    guard = LoopbackGuard().install()
    try:
        yield guard
    finally:
        guard.uninstall()
    assert guard.refused == []  # nothing tried to leave the machine


def aws_environment(endpoint: str, tmp_path: Path, *, keys: bool = True) -> dict[str, str]:
    nowhere = str(tmp_path / "no-aws-config")
    environment = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": nowhere,
        "AWS_SHARED_CREDENTIALS_FILE": nowhere,
    }
    if keys:
        environment |= {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    return environment


def fresh_clients() -> None:
    """Forget the S3 filesystems built so far (fsspec's and Airflow's caches): each test's
    environment and connections apply."""
    import s3fs
    from airflow.sdk.io import store

    s3fs.S3FileSystem.clear_instance_cache()
    store._STORE_CACHE.clear()


@pytest.fixture
def s3(moto_endpoint: str, guard: LoopbackGuard, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    """A boto3 client on the moto server; the environment points botocore at it, bucket ``clips``
    created empty (versioned: a partial upload that was ever committed would leave a version)."""
    import boto3

    for name in (*AWS_VARIABLES_UNSET, "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in aws_environment(moto_endpoint, tmp_path).items():
        monkeypatch.setenv(name, value)
    fresh_clients()
    client = boto3.client("s3", endpoint_url=moto_endpoint)
    for bucket in client.list_buckets()["Buckets"]:
        empty(client, bucket["Name"])
        client.delete_bucket(Bucket=bucket["Name"])
    client.create_bucket(Bucket=BUCKET)
    client.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    yield client
    fresh_clients()


def empty(client, bucket: str) -> None:  # type: ignore[no-untyped-def]
    for upload in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
        client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    versions = client.list_object_versions(Bucket=bucket)
    for entry in versions.get("Versions", []) + versions.get("DeleteMarkers", []):
        client.delete_object(Bucket=bucket, Key=entry["Key"], VersionId=entry["VersionId"])


def keys(client) -> list[str]:  # type: ignore[no-untyped-def]
    return [entry["Key"] for entry in client.list_objects_v2(Bucket=BUCKET).get("Contents", [])]


def every_version(client) -> list[str]:  # type: ignore[no-untyped-def]
    """Every object version and delete marker the bucket ever kept."""
    versions = client.list_object_versions(Bucket=BUCKET)
    return sorted(entry["Key"] for entry in versions.get("Versions", []) + versions.get("DeleteMarkers", []))


def open_uploads(client) -> list[str]:  # type: ignore[no-untyped-def]
    return [upload["Key"] for upload in client.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])]


def sha256_of(client, key: str) -> str:  # type: ignore[no-untyped-def]
    return hashlib.sha256(client.get_object(Bucket=BUCKET, Key=key)["Body"].read()).hexdigest()


def test_a_whole_clip_lands_as_one_object(connection, s3) -> None:
    ctx = context()
    operator(deferrable=False, output_path=f"s3://{BUCKET}/2026/clip.wav").execute(ctx)
    (generation,) = connection.ledger()["generations"]
    assert keys(s3) == ["2026/clip.wav"]
    assert sha256_of(s3, "2026/clip.wav") == generation["sha256"]
    assert open_uploads(s3) == []
    assert ctx["ti"].xcom("local_path") == f"s3://{BUCKET}/2026/clip.wav"


def aws_connection(monkeypatch: pytest.MonkeyPatch, endpoint: str, **fields: object) -> None:
    """``aws_clips``: an Airflow ``aws`` connection whose extra sends S3 calls to ``endpoint``."""
    set_connection(
        monkeypatch,
        "aws_clips",
        conn_type="aws",
        extra=json.dumps({"endpoint_url": endpoint, "region_name": "us-east-1"}),
        **fields,
    )


def test_a_stability_clip_lands_through_object_storage_path_and_an_aws_connection(
    stability, s3, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_stableaudio.operators.stable_audio import StableAudioGenerateOperator

    aws_connection(monkeypatch, moto_endpoint, login="testing", password="testing")
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)  # only the connection says where S3 is, and with which keys
    target = ObjectStoragePath(f"s3://{BUCKET}/2026/clip.wav", conn_id="aws_clips")
    StableAudioGenerateOperator(
        task_id="generate",
        conn_id="stability_default",
        model="stable-audio-2.5",
        prompt="a slow cello drone",
        duration=3,
        output_format="wav",
        output_path=target,
    ).execute(context())
    (generation,) = stability.ledger()["stability"]["generations"]
    assert keys(s3) == ["2026/clip.wav"]
    assert sha256_of(s3, "2026/clip.wav") == generation["sha256"]


def small_parts() -> tuple[object, str]:
    """s3fs with S3's smallest part (5 MiB; its default is 50): a multipart upload for a few MiB."""
    import fsspec

    return fsspec.filesystem("s3", default_block_size=5 * MiB), f"{BUCKET}/clip.wav"


def test_a_clip_sent_in_parts_lands_as_one_object(s3) -> None:
    clip = os.urandom(12 * MiB)
    with staged_write(small_parts()) as out:
        for start in range(0, len(clip), MiB):
            out.write(clip[start : start + MiB])
    assert keys(s3) == ["clip.wav"]
    assert sha256_of(s3, "clip.wav") == hashlib.sha256(clip).hexdigest()
    assert open_uploads(s3) == []


def test_a_failed_write_leaves_no_object_no_version_and_no_open_upload(s3) -> None:
    def broken_off() -> None:
        with staged_write(small_parts()) as out:
            out.write(b"\0" * (6 * MiB))  # past the first part: a multipart upload is open
            assert open_uploads(s3)
            raise ConnectionResetError("the answer broke off")

    with pytest.raises(ConnectionResetError):
        broken_off()
    assert open_uploads(s3) == []
    assert every_version(s3) == []  # the partial clip was never committed, not even as a temporary object


KILLED_WRITER = """
import os, signal, sys
sys.path.insert(0, {root!r})
from tests.loopback_guard import LoopbackGuard
guard = LoopbackGuard().install()
import fsspec
from airflow_provider_stableaudio.exceptions import StableAudioStorageError
from airflow_provider_stableaudio.storage import discard_staged_files, staged_write

# What Airflow's task runner does on SIGTERM: the operator's on_kill, then the task carries on.
signal.signal(signal.SIGTERM, lambda *_: discard_staged_files())
try:
    with staged_write((fsspec.filesystem("s3", default_block_size=5 * 1024 * 1024), {path!r})) as out:
        out.write(b"\\0" * (6 * 1024 * 1024))
        os.kill(os.getpid(), signal.{signal})
        out.write(b"\\0" * (1024 * 1024))
except StableAudioStorageError as error:
    print("stopped:", error)
sys.exit(3 if guard.refused else 0)
"""


def killed_writer(tmp_path: Path, endpoint: str, signal: str) -> subprocess.CompletedProcess[str]:
    script = KILLED_WRITER.format(root=str(ROOT), path=f"{BUCKET}/clip.wav", signal=signal)
    environment = {**os.environ, **aws_environment(endpoint, tmp_path)}
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_write_stopped_by_sigterm_leaves_no_object_and_no_open_upload(
    s3, moto_endpoint: str, tmp_path: Path
) -> None:
    result = killed_writer(tmp_path, moto_endpoint, "SIGTERM")
    assert result.returncode == 0, result.stderr
    assert "stopped: the write was discarded" in result.stdout
    assert open_uploads(s3) == []
    assert every_version(s3) == []


def test_after_a_sigkill_no_object_appears_and_the_open_upload_is_left_to_the_lifecycle_rule(
    s3, moto_endpoint: str, tmp_path: Path
) -> None:
    result = killed_writer(tmp_path, moto_endpoint, "SIGKILL")
    assert result.returncode == -9
    assert every_version(s3) == []
    (upload,) = open_uploads(s3)  # what docs/reliability.md tells the bucket's lifecycle rule to abort
    assert upload.startswith(".clip.wav.")


def test_a_missing_bucket_fails_before_anything_is_paid_and_is_never_created(connection, s3) -> None:
    with pytest.raises(AirflowFailException, match="'no-such-bucket' does not exist") as caught:
        operator(deferrable=False, output_path="s3://no-such-bucket/clip.wav").execute(context())
    assert isinstance(caught.value.__cause__, StableAudioConfigError)
    assert connection.ledger()["requests"] == []
    assert [bucket["Name"] for bucket in s3.list_buckets()["Buckets"]] == [BUCKET]


def test_s3_without_credentials_fails_before_anything_is_paid(
    connection, s3, monkeypatch: pytest.MonkeyPatch
) -> None:
    """s3fs itself, as a plain ``s3://`` URI reaches it where the Amazon provider is not installed."""
    from airflow.sdk.io.fs import _register_filesystems

    monkeypatch.delitem(_register_filesystems(), "s3")  # type: ignore[attr-defined]
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    fresh_clients()
    with pytest.raises(AirflowFailException, match="NoCredentialsError") as caught:
        operator(deferrable=False, output_path=f"s3://{BUCKET}/clip.wav").execute(context())
    assert isinstance(caught.value.__cause__, StableAudioConfigError)
    assert connection.ledger()["requests"] == []
    assert every_version(s3) == []


def test_an_aws_connection_whose_keys_s3_refuses_fails_before_anything_is_paid(
    connection, s3, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import moto.settings

    monkeypatch.setattr(moto.settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)  # S3 checks keys from now on
    aws_connection(monkeypatch, moto_endpoint, login="AKIAUNKNOWNTOS3", password="wrong")
    target = ObjectStoragePath(f"s3://{BUCKET}/clip.wav", conn_id="aws_clips")
    with pytest.raises(
        AirflowFailException, match="PermissionError: The AWS Access Key Id you provided does not exist"
    ) as caught:
        operator(deferrable=False, output_path=target).execute(context())
    assert isinstance(caught.value.__cause__, StableAudioConfigError)
    assert connection.ledger()["requests"] == []


def test_a_store_failing_otherwise_before_payment_leaves_the_task_to_its_retries(
    connection, s3, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens: refused
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    fresh_clients()
    with pytest.raises(StableAudioStorageError, match="cannot be written"):
        operator(deferrable=False, output_path=f"s3://{BUCKET}/clip.wav").execute(context())
    assert connection.ledger()["requests"] == []


def test_init_audio_is_read_from_s3(stability, s3, tmp_path: Path) -> None:
    from airflow_provider_stableaudio.operators.stable_audio import StableAudioGenerateOperator

    clip = synthesize_wav("last week's clip", 8)
    s3.put_object(Bucket=BUCKET, Key="inputs/last_week.wav", Body=clip)
    StableAudioGenerateOperator(
        task_id="generate",
        conn_id="stability_default",
        model="stable-audio-2.5",
        mode="audio-to-audio",
        prompt="the same, warmer",
        duration=3,
        output_format="wav",
        init_audio=f"s3://{BUCKET}/inputs/last_week.wav",
        output_path=str(tmp_path / "clip.wav"),
    ).execute(context())
    (generation,) = stability.ledger()["stability"]["generations"]
    assert generation["input_sha256"] == hashlib.sha256(clip).hexdigest()
    assert generation["input_size"] == len(clip)

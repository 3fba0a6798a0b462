"""DAGs whose records the Clips page reads (tests/plugins/test_clips_app.py).

``clips_public``: a clip generated for real (the operator against the emulator, stored, with an
asset outlet). ``clips_secret``: a clip some users may not hear (their auth manager hides the DAG
from them), written by a plain task the way the provider records one.
"""

from __future__ import annotations

import wave
from pathlib import Path

import pendulum
from airflow.sdk import DAG, Asset, Param, task

from airflow_provider_stableaudio.operators.stable_audio import StableAudioGenerateOperator

RECORD = {
    "url": None,
    "file_name": "clip.wav",
    "content_type": "audio/wav",
    "file_size": None,
    "generation_id": None,
    "credits_used": 7,
    "model": "forged-model",
}


def write_wav(path: Path, seconds: float, rate: int = 8000) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"\x00\x10" * int(seconds * rate))


with DAG(
    "clips_public",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    params={"output_dir": Param("/nonexistent", type="string")},
):
    StableAudioGenerateOperator(
        task_id="generate",
        prompt="a calm piano loop for the clips page",
        seconds_total=3,
        output_path="{{ params.output_dir }}/public/clip.wav",
        outlets=[Asset("clips_public_loop")],
        poll_interval=0.2,
    )


with DAG(
    "clips_secret",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    params={"output_dir": Param("/nonexistent", type="string")},
):

    @task
    def secret_clip(params=None, ti=None) -> None:
        path = Path(params["output_dir"]) / "secret" / "clip.wav"
        write_wav(path, 1.5)
        ti.xcom_push(
            key="audio_file", value={**RECORD, "model": "secret-model", "file_size": path.stat().st_size}
        )
        ti.xcom_push(key="local_path", value=str(path))

    secret_clip()

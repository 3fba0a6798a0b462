"""What the operator and the sensor do with a completed generation: XComs and the optional download."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow_provider_stableaudio.exceptions import StableAudioConfigError

if TYPE_CHECKING:
    from airflow_provider_stableaudio.hooks.stable_audio import StableAudioHook
    from airflow_provider_stableaudio.responses import Generation


def prepare_output_path(output_path: str | None) -> Path | None:
    """Check ``output_path`` and create its folder, before anything is paid for.

    :raises StableAudioConfigError: it names a folder, or its folder cannot be created.
    """
    if output_path is None:
        return None
    if not isinstance(output_path, (str, Path)) or not str(output_path).strip():
        raise StableAudioConfigError(f"output_path must be a file path, got {output_path!r}")
    path = Path(output_path).expanduser()
    if path.is_dir():
        raise StableAudioConfigError(
            f"output_path {str(path)!r} is a folder: give the path of the file to write"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StableAudioConfigError(
            f"output_path folder {str(path.parent)!r} cannot be created: {exc.strerror or exc}"
        ) from exc
    return path


def deliver_generation(
    *,
    context: Any,
    hook: StableAudioHook,
    generation: Generation,
    output_path: str | None,
    log: Any,
) -> str:
    """Push the ``audio_file`` (and ``local_path``) XComs, download if asked; return the audio URL."""
    audio = generation.audio_file
    if audio is None:
        raise ValueError(f"generation {generation.id} has no audio file")
    ti = context["ti"]
    ti.xcom_push(
        key="audio_file",
        value={**audio.to_dict(), "generation_id": generation.id, "credits_used": generation.credits_used},
    )
    log.info(
        "Generation %s completed: %s (%s bytes, %s credits)",
        generation.id,
        audio.url,
        audio.file_size,
        generation.credits_used,
    )
    target = prepare_output_path(output_path)
    if target is not None:
        local = hook.download_audio(audio.url, target, expected_size=audio.file_size)
        ti.xcom_push(key="local_path", value=str(local))
    return audio.url

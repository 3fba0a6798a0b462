"""What the operator and the sensor do with a completed generation: XComs, the download, the asset event."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_stableaudio import storage

if TYPE_CHECKING:
    from airflow_provider_stableaudio.generation_result import Generation
    from airflow_provider_stableaudio.hooks.base import StableAudioBaseHook
    from airflow_provider_stableaudio.storage import OutputPath

#: XCom keys pushed for a completed generation (``generation_id`` is pushed at submission).
AUDIO_FILE_XCOM = "audio_file"
LOCAL_PATH_XCOM = "local_path"


@dataclass(frozen=True)
class Delivery:
    """A completed generation as the task handed it over (what lineage reports).

    :param generation: the completed generation.
    :param location: where the clip was downloaded (path or URI), or ``None`` without ``output_path``.
    """

    generation: Generation
    location: str | None

    @property
    def result(self) -> str:
        """The task's return value: the audio URL (AI/ML API), else where the clip was stored."""
        url = self.generation.audio_file.url if self.generation.audio_file else None
        return url or self.location or ""


def prepare_output_path(output_path: OutputPath | None) -> None:
    """Check ``output_path`` (and create its local folder) before anything is paid for."""
    if output_path is not None:
        storage.prepare(output_path)


def deliver_generation(
    *,
    context: Any,
    hook: StableAudioBaseHook,
    generation: Generation,
    output_path: OutputPath | None,
    log: Any,
    asset_extra: dict[str, Any] | None = None,
    model: str | None = None,
    stored_at: str | None = None,
) -> Delivery:
    """Push the ``audio_file`` (and ``local_path``) XComs, store the clip if asked; return what was delivered.

    :param asset_extra: request details to attach, with the file's, to the event of every asset in
        the task's ``outlets``.
    :param model: the model that generated it, when the task knows it.
    :param stored_at: where the clip already is (a synchronous generation streamed it there).
    """
    audio = generation.audio_file
    if audio is None:
        raise ValueError(f"generation {generation.id} has no audio file")
    ti = context["ti"]
    location = stored_at
    if location is None and output_path is not None:
        # Before any XCom: a clip that cannot be stored is not reported as delivered.
        location = hook.store_result(generation, output_path)
    metadata = {
        **audio.to_dict(),
        "generation_id": generation.id or None,
        "credits_used": generation.credits_used,
        "model": model,
    }
    if location is not None and audio.file_size is None:
        metadata["file_size"] = _stored_size(location)
    ti.xcom_push(key=AUDIO_FILE_XCOM, value=metadata)
    log.info(
        "Generation %s completed: %s (%s bytes, %s credits)",
        generation.id or "(synchronous)",
        audio.url or location,
        metadata["file_size"],
        generation.credits_used,
    )
    if location is not None:
        ti.xcom_push(key=LOCAL_PATH_XCOM, value=location)
    _attach_to_asset_events(context, {**(asset_extra or {}), **metadata, "local_path": location})
    return Delivery(generation=generation, location=location)


def _attach_to_asset_events(context: Any, extra: dict[str, Any]) -> None:
    """Put the clip's details on the event of each asset the task emits (its ``outlets``)."""
    task = context.get("task")
    outlet_events = context.get("outlet_events")
    if task is None or outlet_events is None:
        return
    from airflow.providers.common.compat.sdk import Asset

    for outlet in getattr(task, "outlets", None) or ():
        if isinstance(outlet, Asset):
            outlet_events[outlet].extra.update(extra)


def _stored_size(location: str) -> int | None:
    """The size of the stored clip, when its store says (the service did not)."""
    from airflow_provider_stableaudio import storage

    try:
        target = storage.resolve(location)
        return target.stat().st_size if not isinstance(target, tuple) else int(target[0].size(target[1]))
    except Exception:
        return None

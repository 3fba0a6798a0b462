"""The clips the provider delivered, read back from its own records in the metadata database.

A clip is an ``audio_file`` XCom (pushed by the operator, the sensor and ``@task.stable_audio`` on
completion), with the ``local_path`` XCom of the same task instance (where it was stored), the
extra of the asset events the task emitted (the prompt and requested length, when it has outlets) and
the task's rendered ``prompt`` (when it has none). Nothing here decides who may see what: callers pass
the DAG ids the user may read.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_stableaudio.delivery import AUDIO_FILE_XCOM, LOCAL_PATH_XCOM

if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import datetime

    from sqlalchemy.orm import Session

#: The most clips one listing returns (newest first); filters narrow what is older.
MAX_CLIPS = 500
_CLIP_ID = re.compile(r"(?P<run>[0-9]{1,18}):(?P<map>-1|[0-9]{1,9}):(?P<task>[A-Za-z0-9_.\-]{1,250})")


@dataclass(frozen=True)
class ClipKey:
    """Which task instance delivered a clip: the DAG run's row id, the task and its map index.

    :param dag_run_id: the primary key of the DAG run (``xcom.dag_run_id``).
    :param task_id: the task.
    :param map_index: ``-1`` for a task that is not mapped.
    """

    dag_run_id: int
    task_id: str
    map_index: int

    @property
    def clip_id(self) -> str:
        """The clip's id in the page's URLs: ``<dag run row>:<map index>:<task id>``."""
        return f"{self.dag_run_id}:{self.map_index}:{self.task_id}"

    @classmethod
    def parse(cls, clip_id: str) -> ClipKey | None:
        """The key a clip id names, or ``None`` for anything that is not one (no error to echo)."""
        match = _CLIP_ID.fullmatch(clip_id)
        if match is None:
            return None
        return cls(dag_run_id=int(match["run"]), task_id=match["task"], map_index=int(match["map"]))


@dataclass
class Clip:
    """One delivered clip, as the provider recorded it.

    :param key: the task instance that delivered it.
    :param dag_id: its DAG (from the record, never from a request).
    :param run_id: its DAG run.
    :param created: when the ``audio_file`` XCom was written.
    :param audio_file: the ``audio_file`` XCom.
    :param location: the ``local_path`` XCom: where the clip was stored, if it was.
    :param prompt: the prompt, from the asset event or the rendered task fields.
    :param requested_seconds: the length asked for, from the asset event, when the task had outlets.
    """

    key: ClipKey
    dag_id: str
    run_id: str
    created: datetime
    audio_file: dict[str, Any]
    location: str | None = None
    prompt: str | None = None
    requested_seconds: float | None = None

    @property
    def model(self) -> str | None:
        model = self.audio_file.get("model")
        return model if isinstance(model, str) else None

    @property
    def credits(self) -> float | None:
        value = self.audio_file.get("credits_used")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return None
        return value

    @property
    def service(self) -> str:
        """Which service made it: Stability AI answers with the audio (no URL) and a finish reason."""
        if self.audio_file.get("url") is None or "finish_reason" in self.audio_file:
            return "Stability AI"
        return "AI/ML API"

    @property
    def url(self) -> str | None:
        url = self.audio_file.get("url")
        return url.strip() if isinstance(url, str) and url.strip() else None


def _json(value: Any) -> Any:
    """An XCom value: the Task SDK stores JSON as is; older rows hold it as a JSON string."""
    if isinstance(value, (str, bytes)):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def list_clips(
    session: Session,
    *,
    dag_ids: Iterable[str],
    dag_id: str | None = None,
    model: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    task: tuple[str, str, int] | None = None,
    limit: int = MAX_CLIPS,
) -> list[Clip]:
    """The clips of ``dag_ids``, newest first, narrowed by the filters.

    :param dag_ids: the DAGs whose clips may be listed (what the user may read).
    :param dag_id: only this DAG.
    :param model: only clips of this model.
    :param since: only clips made at or after this time.
    :param until: only clips made before this time.
    :param task: only the clip of this task instance: ``(run_id, task_id, map_index)``.
    :param limit: the most clips returned.
    """
    from airflow.models.xcom import XComModel
    from sqlalchemy import select

    allowed = set(dag_ids)
    if dag_id is not None:
        allowed &= {dag_id}
    if not allowed:
        return []
    query = select(
        XComModel.dag_run_id,
        XComModel.task_id,
        XComModel.map_index,
        XComModel.dag_id,
        XComModel.run_id,
        XComModel.timestamp,
        XComModel.value,
    ).where(XComModel.key == AUDIO_FILE_XCOM, XComModel.dag_id.in_(sorted(allowed)))
    if since is not None:
        query = query.where(XComModel.timestamp >= since)
    if until is not None:
        query = query.where(XComModel.timestamp < until)
    if task is not None:
        run_id, task_id, map_index = task
        query = query.where(
            XComModel.run_id == run_id, XComModel.task_id == task_id, XComModel.map_index == map_index
        )
    # The model sits inside the JSON value: filtered below, so fetch more than the page shows.
    fetch = limit if model is None else limit * 4
    rows = session.execute(query.order_by(XComModel.timestamp.desc()).limit(fetch)).all()
    clips = []
    for row in rows:
        value = _json(row.value)
        if not isinstance(value, dict):
            continue  # not the provider's record
        key = ClipKey(dag_run_id=row.dag_run_id, task_id=row.task_id, map_index=row.map_index)
        clip = Clip(key=key, dag_id=row.dag_id, run_id=row.run_id, created=row.timestamp, audio_file=value)
        if model is None or clip.model == model:
            clips.append(clip)
    clips = clips[:limit]
    _add_locations(session, clips)
    _add_request_details(session, clips)
    return clips


def find_clip(session: Session, key: ClipKey) -> Clip | None:
    """The clip the task instance ``key`` delivered, with where it was stored; ``None`` if none."""
    from airflow.models.xcom import XComModel
    from sqlalchemy import select

    row = session.execute(
        select(XComModel.dag_id, XComModel.run_id, XComModel.timestamp, XComModel.value).where(
            XComModel.key == AUDIO_FILE_XCOM,
            XComModel.dag_run_id == key.dag_run_id,
            XComModel.task_id == key.task_id,
            XComModel.map_index == key.map_index,
        )
    ).first()
    value = _json(row.value) if row is not None else None
    if row is None or not isinstance(value, dict):
        return None
    clip = Clip(key=key, dag_id=row.dag_id, run_id=row.run_id, created=row.timestamp, audio_file=value)
    _add_locations(session, [clip])
    return clip


def _add_locations(session: Session, clips: list[Clip]) -> None:
    """Each clip's ``local_path`` XCom, one query for all."""
    from airflow.models.xcom import XComModel
    from sqlalchemy import select

    if not clips:
        return
    by_key = {clip.key: clip for clip in clips}
    rows = session.execute(
        select(XComModel.dag_run_id, XComModel.task_id, XComModel.map_index, XComModel.value).where(
            XComModel.key == LOCAL_PATH_XCOM,
            XComModel.dag_run_id.in_({clip.key.dag_run_id for clip in clips}),
        )
    ).all()
    for row in rows:
        clip = by_key.get(ClipKey(dag_run_id=row.dag_run_id, task_id=row.task_id, map_index=row.map_index))
        value = _json(row.value)
        if clip is not None and isinstance(value, str) and value:
            clip.location = value


def _add_request_details(session: Session, clips: list[Clip]) -> None:
    """The prompt and requested length: from the task's asset events, else its rendered fields."""
    from airflow.models.asset import AssetEvent
    from airflow.models.renderedtifields import RenderedTaskInstanceFields as Rendered
    from sqlalchemy import select

    if not clips:
        return
    by_ti = {(c.dag_id, c.run_id, c.key.task_id, c.key.map_index): c for c in clips}
    dag_ids = {c.dag_id for c in clips}
    run_ids = {c.run_id for c in clips}
    events = session.execute(
        select(
            AssetEvent.source_dag_id,
            AssetEvent.source_run_id,
            AssetEvent.source_task_id,
            AssetEvent.source_map_index,
            AssetEvent.extra,
        ).where(AssetEvent.source_dag_id.in_(dag_ids), AssetEvent.source_run_id.in_(run_ids))
    ).all()
    for event in events:
        clip = by_ti.get(
            (event.source_dag_id, event.source_run_id, event.source_task_id, event.source_map_index)
        )
        extra = _json(event.extra)
        if clip is None or not isinstance(extra, dict):
            continue
        if isinstance(extra.get("prompt"), str):
            clip.prompt = extra["prompt"]
        seconds = extra.get("duration_seconds")
        if isinstance(seconds, (int, float)) and not isinstance(seconds, bool):
            clip.requested_seconds = float(seconds)
    missing = [c for c in clips if c.prompt is None]
    if not missing:
        return
    rendered = session.execute(
        select(
            Rendered.dag_id, Rendered.run_id, Rendered.task_id, Rendered.map_index, Rendered.rendered_fields
        ).where(
            Rendered.dag_id.in_({c.dag_id for c in missing}), Rendered.run_id.in_({c.run_id for c in missing})
        )
    ).all()
    for row in rendered:
        clip = by_ti.get((row.dag_id, row.run_id, row.task_id, row.map_index))
        fields = _json(row.rendered_fields)
        if clip is not None and clip.prompt is None and isinstance(fields, dict):
            prompt = fields.get("prompt")
            if isinstance(prompt, str) and prompt:
                clip.prompt = prompt

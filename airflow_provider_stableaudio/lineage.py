"""What the operator and the sensor tell OpenLineage: the clip as an output dataset, and a run facet.

The naming and the facet's content are plain Python here; the OpenLineage objects are built in
:mod:`airflow_provider_stableaudio.openlineage_facets`, imported only when the OpenLineage provider
asks, so that provider stays optional. No Airflow imports.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from airflow_provider_stableaudio.delivery import Delivery
    from airflow_provider_stableaudio.generation_request import GenerationRequest

# Schemes the OpenLineage naming spec spells one way, as fsspec and Airflow accept them.
_SCHEMES = {"s3a": "s3", "s3n": "s3", "gcs": "gs"}
# Buckets hold no "@": what precedes one is the Airflow connection id of an ObjectStoragePath URI.
_BUCKET_SCHEMES = ("s3", "gs")


def dataset_name(location: str) -> tuple[str, str]:
    """``(namespace, name)`` of the dataset at ``location``, by the OpenLineage naming spec.

    A local path (or ``file://`` URI) is namespace ``file`` with the absolute path as name;
    ``s3://bucket/key`` is ``s3://bucket`` and ``key`` (``gs://`` likewise); any other URI is
    ``scheme://authority`` and the path within it.
    """
    if "://" not in location or location.startswith("file://"):
        path = location.removeprefix("file://")
        return "file", os.path.abspath(os.path.expanduser(path))
    parts = urlsplit(location)
    scheme = _SCHEMES.get(parts.scheme, parts.scheme)
    authority = parts.netloc.rpartition("@")[2] if scheme in _BUCKET_SCHEMES else parts.netloc
    return f"{scheme}://{authority}", parts.path.lstrip("/")


def facet_fields(delivery: Delivery, request: GenerationRequest | None) -> dict[str, Any]:
    """The provider's run facet: the generation, its cost and, when the task knows it, the request."""
    audio = delivery.generation.audio_file
    return {
        "generation_id": delivery.generation.id or None,
        "credits_used": delivery.generation.credits_used,
        "model": request.model if request else None,
        "parameters": dict(request.params) if request else None,
        "audio_file": audio.to_dict() if audio else None,
    }


class LineageMixin:
    """``get_openlineage_facets_on_complete`` for the operator and the sensor (and so the decorator).

    The task sets :attr:`delivery` when it hands the clip over; a try that delivered nothing
    (failed, or submitted only) reports no lineage of its own.
    """

    delivery: Delivery | None = None

    def lineage_request(self) -> GenerationRequest | None:
        """The request this task sent, when it knows it (the sensor does not)."""
        return None

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """The clip at ``output_path`` as an output dataset, and the ``stableAudioGeneration`` run facet.

        :return: an ``OperatorLineage``, or ``None`` when the OpenLineage provider is not installed
            or the task delivered no clip.
        """
        if self.delivery is None:
            return None
        try:
            from airflow_provider_stableaudio.openlineage_facets import operator_lineage
        except ImportError:  # the OpenLineage provider is optional
            return None
        return operator_lineage(self.delivery, self.lineage_request())

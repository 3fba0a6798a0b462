"""The OpenLineage objects for a delivered clip; needs the OpenLineage provider.

Imported only from ``get_openlineage_facets_on_complete`` (see :mod:`airflow_provider_stableaudio.lineage`),
so an Airflow without the OpenLineage provider never imports it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs
from airflow.providers.openlineage.extractors import OperatorLineage
from openlineage.client.generated.base import InputDataset, OutputDataset, RunFacet

from airflow_provider_stableaudio.lineage import dataset_name, facet_fields

if TYPE_CHECKING:
    from airflow_provider_stableaudio.delivery import Delivery
    from airflow_provider_stableaudio.generation_request import GenerationRequest

#: The run facet's key in the event's ``run.facets``.
FACET_NAME = "stableAudioGeneration"


@attrs.define
class StableAudioGenerationRunFacet(RunFacet):
    """The Stable Audio generation a task run made or waited for.

    :param generation_id: the API's generation id (``None`` for a synchronous Stability model).
    :param credits_used: what the generation cost (``meta.usage.credits_used``), when the API said:
        an ``int``, or a ``float`` when the API reported a fraction.
    :param model: the model asked for (``None`` for the sensor, which did not send the request).
    :param parameters: the request's fields (``prompt``, ``seconds_total``, ...), defaults included.
    :param audio_file: what the service said of the file (``content_type``, ``file_size``, and on
        Stability AI ``seed`` and ``finish_reason``), as in the ``audio_file`` XCom.
    """

    generation_id: str | None
    credits_used: int | float | None = None
    model: str | None = None
    parameters: dict[str, Any] | None = None
    audio_file: dict[str, Any] | None = None


def operator_lineage(delivery: Delivery, request: GenerationRequest | None) -> OperatorLineage:
    """The clip's location as the output dataset (none without ``output_path``), the clip it was
    made from (``init_audio``, audio-to-audio and inpaint) as the input dataset, and the run facet."""
    outputs = []
    if delivery.location is not None:
        namespace, name = dataset_name(delivery.location)
        outputs.append(OutputDataset(namespace=namespace, name=name))
    inputs = []
    if request is not None and request.init_audio is not None:
        namespace, name = dataset_name(request.init_audio.location)
        inputs.append(InputDataset(namespace=namespace, name=name))
    facet = StableAudioGenerationRunFacet(**facet_fields(delivery, request))
    return OperatorLineage(inputs=inputs, outputs=outputs, run_facets={FACET_NAME: facet})

"""The operator: submit a Stable Audio generation and wait for it (deferred by default)."""

from __future__ import annotations

import warnings
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_stableaudio.delivery import deliver_generation, prepare_output_path
from airflow_provider_stableaudio.events import generation_from_event
from airflow_provider_stableaudio.exceptions import (
    StableAudioConfigError,
    StableAudioGenerationFailed,
    StableAudioPermanentError,
    StableAudioTimeoutError,
)
from airflow_provider_stableaudio.generation_request import DEFAULT_MODEL, GenerationRequest
from airflow_provider_stableaudio.generation_result import GenerationState
from airflow_provider_stableaudio.hooks.stable_audio import StableAudioHook
from airflow_provider_stableaudio.lineage import LineageMixin
from airflow_provider_stableaudio.links import StableAudioClipLink
from airflow_provider_stableaudio.task_failure import fail_without_retries
from airflow_provider_stableaudio.waiting import (
    default_deferrable,
    defer_to_trigger,
    positive_seconds,
    ran_out_of_time,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from airflow.sdk import Context

    from airflow_provider_stableaudio.generation_result import Generation
    from airflow_provider_stableaudio.storage import OutputPath

# Key in the task's durable state (Airflow >= 3.3) holding the submitted generation.
STATE_KEY = "stableaudio_generation"


class StableAudioGenerateOperator(LineageMixin, BaseOperator):
    """Generate a clip with Stable Audio; return its URL (XCom ``return_value``).

    Pushes XCom ``generation_id`` as soon as the API accepts the request, ``audio_file`` (url,
    file_name, content_type, file_size, generation_id, credits_used) on completion, and
    ``local_path`` when ``output_path`` is set. With the OpenLineage provider installed and enabled,
    the run's lineage event names the clip at ``output_path`` as its output and carries the
    ``stableAudioGeneration`` run facet (see :mod:`airflow_provider_stableaudio.lineage`).

    :param prompt: what to generate (templated).
    :param seconds_total: clip length, 1..47 s (default 30; templated).
    :param seconds_start: where the clip starts, 0..47 s and not after ``seconds_total`` (templated).
    :param steps: diffusion steps, 1..1000 (default 100; cost grows with steps; templated).
    :param model: the API model id (templated).
    :param conn_id: the Stable Audio connection.
    :param poll_interval: seconds between status checks.
    :param timeout: seconds to wait for the generation (number or timedelta; default 15 min). A
        shorter ``execution_timeout`` ends the wait too, deferred or not (``AirflowTaskTimeout``,
        retried as any execution timeout); ``timeout`` ends it with ``StableAudioTimeoutError``.
    :param deferrable: wait in the triggerer, not on a worker. Default: ``[operators]
        default_deferrable`` where the deployment sets it (environment or ``airflow.cfg``), else True.
    :param wait_for_completion: when False, return the generation id right after submitting.
    :param output_path: download the audio here once completed: a local path, a URI
        (``s3://...``, any fsspec scheme installed) or an ``ObjectStoragePath`` (templated).
    :param durable: keep the submitted generation in the task's durable state, so that a later
        try of this task instance (a retry, or a run after a Clear) waits for it instead of paying
        for a new one (default True). ``False`` submits anew on every try. Needs Airflow 3.3's
        durable task state: on older versions every try submits anew, and giving it warns so.
    """

    template_fields: Sequence[str] = (
        "prompt",
        "seconds_total",
        "seconds_start",
        "steps",
        "model",
        "output_path",
    )
    operator_extra_links = (StableAudioClipLink(),)
    ui_color = "#e3d7ff"

    def __init__(
        self,
        *,
        prompt: str,
        seconds_total: int | None = None,
        seconds_start: int | None = None,
        steps: int | None = None,
        model: str = DEFAULT_MODEL,
        conn_id: str = StableAudioHook.default_conn_name,
        poll_interval: float = 10,
        timeout: float | timedelta = timedelta(minutes=15),
        deferrable: bool | None = None,
        wait_for_completion: bool = True,
        output_path: OutputPath | None = None,
        durable: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if durable is not None:
            from airflow.providers.common.compat.version_compat import AIRFLOW_V_3_3_PLUS

            if not AIRFLOW_V_3_3_PLUS:  # as common-compat's ResumableJobMixin stand-in warns
                warnings.warn(
                    "`durable` has no effect on Airflow versions below 3.3.", UserWarning, stacklevel=2
                )
        self.durable = durable is not False
        self.prompt = prompt
        self.seconds_total = seconds_total
        self.seconds_start = seconds_start
        self.steps = steps
        self.model = model
        self.conn_id = conn_id
        self.poll_interval = positive_seconds("poll_interval", poll_interval)
        self.timeout = positive_seconds("timeout", timeout)
        self.deferrable = default_deferrable() if deferrable is None else deferrable
        self.wait_for_completion = wait_for_completion
        self.output_path = output_path
        if output_path is not None and not wait_for_completion:
            raise StableAudioConfigError(
                "output_path needs wait_for_completion=True: nothing to download yet"
            )

    @cached_property
    def hook(self) -> StableAudioHook:
        return StableAudioHook(conn_id=self.conn_id)

    def build_request(self) -> GenerationRequest:
        """The validated request from the rendered fields; raises before any HTTP call."""
        return GenerationRequest.build(
            self.model,
            prompt=self.prompt,
            seconds_total=self.seconds_total,
            seconds_start=self.seconds_start,
            steps=self.steps,
        )

    @fail_without_retries
    def execute(self, context: Context) -> str:
        request = self.build_request()
        prepare_output_path(self.output_path)
        # Airflow >= 3.3 keeps this store across tries of the task (and across a Clear, unless
        # [state_store] clear_on_success is set); older versions have none.
        store = context.get("task_state_store") if self.durable else None
        generation = self._reattach(store, request) or self._submit(store, request)
        context["ti"].xcom_push(key="generation_id", value=generation.id)
        if not self.wait_for_completion:
            return generation.id
        if generation.state is GenerationState.PENDING:
            if self.deferrable:
                defer_to_trigger(
                    self,
                    hook=self.hook,
                    generation_id=generation.id,
                    poll_interval=self.poll_interval,
                    timeout=self.timeout,
                )
            generation = self.hook.wait_for_generation(
                generation.id, poll_interval=self.poll_interval, timeout=self.timeout
            )
        return self._finish(context, generation)

    def _submit(self, store: Any, request: GenerationRequest) -> Generation:
        generation = self.hook.submit_generation(request, timeout=self.timeout)
        # First thing after the API accepted it, so that a retry of this task re-attaches to it
        # instead of paying for a second generation.
        if store is not None:
            try:
                store.set(STATE_KEY, {"generation_id": generation.id, "request": request.fingerprint()})
            except Exception:
                # The generation is paid for and its id known: failing now would make the retry
                # pay again. Carry on; only a later retry loses the way back to it.
                self.log.warning(
                    "Could not save generation %s in the task's state; waiting for it anyway, but a "
                    "retry of this task would submit a new one",
                    generation.id,
                    exc_info=True,
                )
        self.log.info(
            "Submitted Stable Audio generation %s (%s credits): %s",
            generation.id,
            generation.credits_used,
            request.params,
        )
        return generation

    def _reattach(self, store: Any, request: GenerationRequest) -> Generation | None:
        """The generation an earlier try of this task submitted, if it is still worth waiting for."""
        saved = store.get(STATE_KEY) if store is not None else None
        if not isinstance(saved, dict) or saved.get("request") != request.fingerprint():
            return None
        generation_id = saved["generation_id"]
        try:
            generation = self.hook.get_generation(generation_id, timeout=self.timeout)
        except StableAudioPermanentError as error:
            self.log.warning("Not re-attaching to generation %s: %s", generation_id, error)
            return None
        if generation.state is GenerationState.FAILED:
            self.log.warning(
                "Generation %s from an earlier try failed (%s): submitting a new one",
                generation_id,
                generation.error_message,
            )
            return None
        self.log.info(
            "Re-attaching to generation %s from an earlier try (%s)", generation_id, generation.status
        )
        return generation

    def on_kill(self) -> None:
        """A killed task leaves no partial download behind (the wait itself holds nothing)."""
        from airflow_provider_stableaudio.storage import discard_staged_files

        discard_staged_files()

    @fail_without_retries
    def execute_complete(self, context: Context, event: dict[str, Any]) -> str:
        """Resume after the trigger: fail on anything but a ``success`` event."""
        try:
            generation = generation_from_event(event)
        except StableAudioTimeoutError as error:
            raise ran_out_of_time(self, error, self.timeout) from None
        return self._finish(context, generation)

    def _finish(self, context: Context, generation: Generation) -> str:
        if generation.state is GenerationState.FAILED:
            raise StableAudioGenerationFailed.for_generation(generation.id, generation.error_message)
        request = self.build_request()
        # A failed download keeps the stored generation: the next try downloads again, and never
        # pays for a new clip because a CDN answered 404 once.
        self.delivery = deliver_generation(
            context=context,
            hook=self.hook,
            generation=generation,
            output_path=self.output_path,
            log=self.log,
            asset_extra={
                "prompt": request.params.get("prompt"),
                "model": request.model,
                "duration_seconds": request.duration_seconds,
            },
        )
        return self.delivery.url

    def lineage_request(self) -> GenerationRequest:
        return self.build_request()

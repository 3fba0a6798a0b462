"""The operator: submit a Stable Audio generation and wait for it (deferred by default)."""

from __future__ import annotations

import time
import warnings
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_stableaudio.delivery import deliver_generation, prepare_output_path
from airflow_provider_stableaudio.events import generation_from_event, result_gone_hint
from airflow_provider_stableaudio.exceptions import (
    StableAudioConfigError,
    StableAudioPermanentError,
    StableAudioResultGoneError,
    StableAudioResultNotFoundError,
    StableAudioTimeoutError,
    StableAudioValidationError,
)
from airflow_provider_stableaudio.generation_request import GenerationRequest, default_model, service_of
from airflow_provider_stableaudio.generation_result import GenerationState, generation_failure
from airflow_provider_stableaudio.hooks.factory import connection_service, hook_class
from airflow_provider_stableaudio.lineage import LineageMixin
from airflow_provider_stableaudio.links import StableAudioClipLink
from airflow_provider_stableaudio.services import AIMLAPI, SERVICES
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
    from airflow_provider_stableaudio.hooks.base import StableAudioBaseHook
    from airflow_provider_stableaudio.services import Service
    from airflow_provider_stableaudio.storage import OutputPath

# Key in the task's durable state (Airflow >= 3.3) holding the submitted generation.
STATE_KEY = "stableaudio_generation"
# The operator's request fields, handed to GenerationRequest.build (None: not given).
REQUEST_FIELDS = (
    "prompt",
    "seconds_total",
    "seconds_start",
    "steps",
    "duration",
    "seed",
    "cfg_scale",
    "output_format",
    "strength",
    "mask_start",
    "mask_end",
)


class StableAudioGenerateOperator(LineageMixin, BaseOperator):
    """Generate a clip with Stable Audio, on the AI/ML API or on Stability AI's own API.

    The connection's type decides the service: ``stableaudio`` (AI/ML API; the task returns the
    clip's URL) or ``stability`` (Stability AI; the answer is the audio itself, so ``output_path``
    is required and the task returns where the clip was stored). Each model takes its own fields
    (see ``docs/choosing-a-service.md``); every field is checked before any request.

    Pushes XCom ``generation_id`` as soon as the API accepts the request (not for Stability's
    synchronous models, which have none), ``audio_file`` (what is known of the file: url,
    content_type, file_size, seed, finish_reason, generation_id, credits_used, model) on completion,
    and ``local_path`` when ``output_path`` is set. With the OpenLineage provider installed and
    enabled, the run's lineage event names the clip at ``output_path`` as its output and carries the
    ``stableAudioGeneration`` run facet (see :mod:`airflow_provider_stableaudio.lineage`).

    :param prompt: what to generate (templated).
    :param model: the model id (templated); default ``stable-audio`` on the AI/ML API,
        ``stable-audio-3`` on Stability AI (also ``stable-audio-2.5``, ``stable-audio-2``).
    :param seconds_total: AI/ML API: clip length, 1..47 whole seconds (default 30; templated).
    :param seconds_start: AI/ML API: where the clip starts, 1..47 s, not after ``seconds_total``.
    :param steps: diffusion steps: 1..1000 on the AI/ML API (default 100), 4..8 on Stable Audio
        3 and 2.5 (the service's default 8), 30..100 on Stable Audio 2 (default 50; templated).
    :param duration: Stability AI: clip length in seconds, a number (``12.5`` is valid): 1..380 on
        Stable Audio 3, 1..190 on 2.5 and 2. Left out, the service makes a clip of 190 s
        (templated).
    :param seed: Stability AI: 0..4294967294, 0 for a random one (templated).
    :param cfg_scale: Stability AI: how closely to follow the prompt, 1..25 (the service's default
        1 on Stable Audio 3 and 2.5, 7 on 2); not taken by Stable Audio 2.5's inpaint (templated).
    :param output_format: Stability AI: ``mp3`` (default) or ``wav`` (templated).
    :param init_audio: Stability AI: the clip to transform (audio-to-audio) or repair (inpaint): a
        local path, a URI or an ``ObjectStoragePath``; mp3 or wav, 6..380 s and at most 100 MB on
        Stable Audio 3, 6..190 s and at most 50 MB on 2.5 and 2 (templated).
    :param mode: ``text-to-audio``, ``audio-to-audio`` or ``inpaint`` (Stable Audio 3 and 2.5;
        Stable Audio 2 has no inpaint); by default it follows from the fields (``init_audio``
        with ``mask_start``/``mask_end`` is inpaint, ``init_audio`` otherwise audio-to-audio;
        templated).
    :param strength: audio-to-audio: how far the result may move from ``init_audio``: 0..1 on
        Stable Audio 3 (default 1) and 2, 0.01..1 on 2.5.
    :param mask_start: inpaint: where the span to regenerate starts, in seconds: 0..380 on Stable
        Audio 3, 0..190 on 2.5 (default 30).
    :param mask_end: inpaint: where it ends, in seconds, after ``mask_start`` (default: 380 on
        Stable Audio 3, 190 on 2.5).
    :param conn_id: the connection: type ``stableaudio`` or ``stability``.
    :param poll_interval: seconds between status checks.
    :param timeout: seconds to wait for the generation (number or timedelta; default 15 min). A
        shorter ``execution_timeout`` ends the wait too, deferred or not (``AirflowTaskTimeout``,
        retried as any execution timeout); ``timeout`` ends it with ``StableAudioTimeoutError``.
    :param deferrable: wait in the triggerer, not on a worker. Default: ``[operators]
        default_deferrable`` where the deployment's environment sets it
        (``AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE`` or its ``_CMD`` / ``_SECRET`` form; a line in
        ``airflow.cfg`` is not read: Airflow writes ``false`` there by default), else True. A
        deployment without a triggerer sets ``AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE=false``.
    :param wait_for_completion: when False, return the generation id right after submitting.
    :param output_path: download the audio here once completed: a local path, a URI
        (``s3://...``, any fsspec scheme installed) or an ``ObjectStoragePath`` (templated).
    :param durable: keep the submitted generation in the task's durable state, so that a later
        try of this task instance (a retry, or a run after a Clear) waits for it instead of paying
        for a new one (default True). An automatic retry never pays again for it: if its result
        was lost or the API no longer knows it, the task fails without retries; the first try
        after a Clear then submits anew. ``False`` submits anew on every try. Needs Airflow 3.3's
        durable task state: on older versions every try submits anew, and giving it warns so.
    """

    template_fields: Sequence[str] = (
        "prompt",
        "seconds_total",
        "seconds_start",
        "steps",
        "model",
        "duration",
        "seed",
        "cfg_scale",
        "output_format",
        "init_audio",
        "mode",
        "strength",
        "mask_start",
        "mask_end",
        "output_path",
    )
    operator_extra_links = (StableAudioClipLink(),)
    ui_color = "#e3d7ff"

    def __init__(
        self,
        *,
        prompt: str,
        model: str | None = None,
        seconds_total: int | None = None,
        seconds_start: int | None = None,
        steps: int | None = None,
        duration: float | None = None,
        seed: int | None = None,
        cfg_scale: float | None = None,
        output_format: str | None = None,
        init_audio: OutputPath | None = None,
        mode: str | None = None,
        strength: float | None = None,
        mask_start: float | None = None,
        mask_end: float | None = None,
        conn_id: str = SERVICES[AIMLAPI].default_conn_id,
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
        self.duration = duration
        self.seed = seed
        self.cfg_scale = cfg_scale
        self.output_format = output_format
        self.init_audio = init_audio
        self.mode = mode
        self.strength = strength
        self.mask_start = mask_start
        self.mask_end = mask_end
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
    def service(self) -> Service:
        """The service the connection reaches (looked up from its type, at run time only)."""
        return connection_service(self.conn_id)

    @cached_property
    def hook(self) -> StableAudioBaseHook:
        return hook_class(self.service.name)(conn_id=self.conn_id)

    def build_request(self, *, check_audio: bool = True) -> GenerationRequest:
        """The validated request from the rendered fields; raises before any HTTP call.

        :param check_audio: ``False`` names ``init_audio`` without opening it: for describing a
            request already sent (the clip is paid for; this worker may not reach the input file).
        """
        model = self.model if self.model is not None else default_model(self.service.name)
        serving = service_of(model) if isinstance(model, str) else None
        if serving is not None and serving != self.service.name:
            needed = SERVICES[serving]
            raise StableAudioValidationError(
                f"model {model!r} is served by the {needed.title}: use a connection of type "
                f"{needed.conn_type!r} (such as {needed.default_conn_id!r}); connection "
                f"{self.conn_id!r} is of type {self.service.conn_type!r} ({self.service.title})",
                field="model",
            )
        fields = {name: getattr(self, name) for name in REQUEST_FIELDS}
        return GenerationRequest.build(
            model, mode=self.mode, init_audio=self.init_audio, check_audio=check_audio, **fields
        )

    def _check_result_target(self, request: GenerationRequest) -> None:
        """What the service's answer needs of the task, checked before anything is paid for."""
        if request.service == AIMLAPI:
            return
        if not request.asynchronous and not self.wait_for_completion:
            raise StableAudioConfigError(
                f"wait_for_completion=False does not apply to {request.model}: it answers with the "
                "audio itself, so there is no generation to wait for later"
            )
        if self.output_path is None and self.wait_for_completion:
            raise StableAudioConfigError(
                f"output_path is required with a {self.service.title} connection: its answer is the "
                "audio itself, not a URL, so it must be stored somewhere"
            )

    @fail_without_retries
    def execute(self, context: Context) -> str:
        request = self.build_request()
        self._check_result_target(request)
        prepare_output_path(self.output_path)
        if not request.asynchronous and self.output_path is not None:  # (checked above: it is set)
            # The call is the wait (Stable Audio 2.x): nothing to defer, nothing to re-attach to.
            generation = self.hook.generate_to(request, self.output_path, timeout=self.timeout)
            return self._finish(context, generation)
        # Airflow >= 3.3 keeps this store across tries of the task (and across a Clear, unless
        # [state_store] clear_on_success is set); older versions have none.
        store = context.get("task_state_store") if self.durable else None
        if store is None and self._automatic_retry(context):
            self.log.warning(
                "This retry cannot re-attach to the generation an earlier try submitted (no durable task "
                "state: Airflow < 3.3, or durable=False): it submits a new one, paid for again"
            )
        self._submitted_at: float | None = None  # when the generation was created, if known
        generation = self._reattach(store, request, context) or self._submit(store, request)
        context["ti"].xcom_push(key="generation_id", value=generation.id)
        if not self.wait_for_completion:
            return generation.id
        if generation.state is GenerationState.PENDING:
            if self.deferrable and self._store_to is None:
                defer_to_trigger(
                    self,
                    hook=self.hook,
                    generation_id=generation.id,
                    poll_interval=self.poll_interval,
                    timeout=self.timeout,
                    request=request,
                    submitted_at=self._submitted_at,
                )
            if self.deferrable:
                self.log.info("Waiting on the worker: the connection's results are served once only")
            try:
                generation = self.hook.wait_for_generation(
                    generation.id,
                    poll_interval=self.poll_interval,
                    timeout=self.timeout,
                    store_to=self._store_to,
                )
            except StableAudioResultGoneError as error:
                raise _lost(error) from None
        return self._finish(context, generation)

    def _submit(self, store: Any, request: GenerationRequest) -> Generation:
        generation = self.hook.submit_generation(request, timeout=self.timeout)
        self._submitted_at = time.time()
        # First thing after the API accepted it, so that a retry of this task re-attaches to it
        # instead of paying for a second generation.
        if store is not None:
            try:
                store.set(
                    STATE_KEY,
                    {
                        "generation_id": generation.id,
                        "request": request.fingerprint(),
                        "submitted_at": self._submitted_at,
                    },
                )
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
            "Submitted Stable Audio generation %s (%s credits): %s %s",
            generation.id,
            generation.credits_used,
            request.model,
            request.params,
        )
        return generation

    def _reattach(self, store: Any, request: GenerationRequest, context: Context) -> Generation | None:
        """The generation an earlier try of this task submitted, if it is still worth waiting for.

        An automatic retry never pays again for a generation that was paid for: one the API no
        longer knows fails the task without retries. Only the first try of a run after a person
        cleared the task submits anew in its place.
        """
        saved = store.get(STATE_KEY) if store is not None else None
        if not isinstance(saved, dict):
            return None
        if saved.get("request") != request.fingerprint():
            self.log.warning(
                "The request differs from the one an earlier try submitted as generation %s: "
                "submitting a new generation for it, paid for again",
                saved.get("generation_id"),
            )
            return None
        generation_id = saved["generation_id"]
        submitted_at = saved.get("submitted_at")
        self._submitted_at = submitted_at if isinstance(submitted_at, (int, float)) else None
        try:
            generation = self.hook.get_generation(
                generation_id, timeout=self.timeout, store_to=self._store_to
            )
        except (StableAudioPermanentError, StableAudioResultNotFoundError) as error:
            if not self._automatic_retry(context):
                self.log.warning(
                    "Not re-attaching to generation %s (%s): this run was asked for anew, submitting a "
                    "new generation",
                    generation_id,
                    error,
                )
                return None
            if isinstance(error, StableAudioPermanentError) and error.status_code != 404:
                raise  # the key, say: not the generation, and a new submission would meet it too
            raise StableAudioResultGoneError(
                f"Generation {generation_id}, which an earlier try of this run submitted and paid for, "
                f"is no longer served ({error}). An automatic retry does not pay for a new one, so the "
                "task fails without retries; clear the task to pay for a new one"
            ) from None
        except StableAudioResultGoneError as error:
            raise _lost(error) from None  # this poll received the result and could not store it
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

    def _automatic_retry(self, context: Context) -> bool:
        """Whether this try is one of Airflow's automatic retries, not the first try of a run.

        A run starts with the task's first try, or with the first try after a person cleared it:
        Airflow then raises ``max_tries`` to the last try number plus ``retries``, while automatic
        retries keep it (the count Airflow's own ``get_first_reschedule_date`` makes). A try whose
        numbers are unknown counts as a retry: it never pays again.
        """
        ti = context.get("ti")
        try_number, max_tries = getattr(ti, "try_number", None), getattr(ti, "max_tries", None)
        if not isinstance(try_number, int) or not isinstance(max_tries, int):
            return True
        return try_number != max_tries - (self.retries or 0) + 1

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
        try:
            return self._finish(context, generation)
        except StableAudioResultGoneError as error:
            raise StableAudioResultGoneError(f"{error}{result_gone_hint(event)}") from None

    @property
    def _store_to(self) -> OutputPath | None:
        """Where the poll that finds the result finished stores it, when the service serves it once."""
        return self.output_path if self.hook.stores_while_polling else None

    def _finish(self, context: Context, generation: Generation) -> str:
        if generation.state is GenerationState.FAILED:
            raise generation_failure(generation)
        request = self.build_request(check_audio=False)
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
            model=request.model,
            stored_at=generation.stored_at,
        )
        return self.delivery.result

    def lineage_request(self) -> GenerationRequest:
        return self.build_request(check_audio=False)


def _lost(error: StableAudioResultGoneError) -> StableAudioResultGoneError:
    """A paid result gone while this try waited for it, saying what a person can do about it."""
    return StableAudioResultGoneError(f"{error}; clear the task to pay for a new one")

"""The sensor: wait for a generation submitted elsewhere (for example with ``wait_for_completion=False``)."""

from __future__ import annotations

from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, NoReturn

from airflow.sdk import BaseSensorOperator, PokeReturnValue

from airflow_provider_stableaudio.delivery import deliver_generation, prepare_output_path
from airflow_provider_stableaudio.events import generation_from_event, result_gone_hint
from airflow_provider_stableaudio.exceptions import (
    StableAudioConfigError,
    StableAudioResultGoneError,
    StableAudioRetryableError,
    StableAudioTimeoutError,
)
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

    from airflow_provider_stableaudio.hooks.base import StableAudioBaseHook
    from airflow_provider_stableaudio.storage import OutputPath


class StableAudioGenerationSensor(LineageMixin, BaseSensorOperator):
    """Wait until a Stable Audio generation completes; return its audio URL (AI/ML API) or where
    its clip was stored (Stability AI's Stable Audio 3, whose result is the audio itself).

    Deferrable by default (the same trigger as the operator); with ``deferrable=False`` it pokes
    in ``poke`` or ``reschedule`` mode. On success it pushes the same XComs as
    :class:`~airflow_provider_stableaudio.operators.stable_audio.StableAudioGenerateOperator`, and
    the same lineage, without the request it did not send.

    :param generation_id: the generation to wait for (templated, e.g. pulled from XCom).
    :param conn_id: the connection (type ``stableaudio`` or ``stability``).
    :param output_path: store the audio here once completed: a local path, a URI or an
        ``ObjectStoragePath`` (templated); required with a Stability AI connection.
    :param deferrable: wait in the triggerer, not on a worker. Default: ``[operators]
        default_deferrable`` where the deployment's environment sets it
        (``AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE`` or its ``_CMD`` / ``_SECRET`` form; a line in
        ``airflow.cfg`` is not read: Airflow writes ``false`` there by default), else True. A
        deployment without a triggerer sets ``AIRFLOW__OPERATORS__DEFAULT_DEFERRABLE=false``.
    :param poke_interval: seconds between status checks, greater than 0 (default 10).
    :param timeout: seconds to wait before failing (default 15 min). Deferred or not, running out of
        time raises ``AirflowSensorTimeout`` (no task retries), or skips the task with
        ``soft_fail=True``; ``never_fail=True`` skips it on any failure, as for every sensor. A
        shorter ``execution_timeout`` also ends the deferred wait (``AirflowTaskTimeout``).
    """

    template_fields: Sequence[str] = ("generation_id", "output_path")
    operator_extra_links = (StableAudioClipLink(),)
    ui_color = "#e3d7ff"

    def __init__(
        self,
        *,
        generation_id: str,
        conn_id: str = SERVICES[AIMLAPI].default_conn_id,
        output_path: OutputPath | None = None,
        deferrable: bool | None = None,
        poke_interval: float | timedelta = 10,
        timeout: float | timedelta = timedelta(minutes=15),
        **kwargs: Any,
    ) -> None:
        # 0 would make the trigger poll without a pause; the operator rejects poll_interval=0 too.
        poke_interval = positive_seconds("poke_interval", poke_interval)
        super().__init__(poke_interval=poke_interval, timeout=timeout, **kwargs)
        self.generation_id = generation_id
        self.conn_id = conn_id
        self.output_path = output_path
        self.deferrable = default_deferrable() if deferrable is None else deferrable

    @cached_property
    def hook(self) -> StableAudioBaseHook:
        return hook_class(connection_service(self.conn_id).name)(conn_id=self.conn_id)

    def execute(self, context: Context) -> Any:
        self._prepare_output_path()
        if not self.deferrable or self.hook.stores_while_polling:
            # A result served once only is stored by the poke that finds it: it waits on the worker.
            return super().execute(context)
        # One check on the worker first: no deferral at all for a generation that already ended.
        try:
            result = self.poke(context)
        except Exception as error:
            self._fail_as_a_sensor(error)
        if isinstance(result, PokeReturnValue):
            return result.xcom_value
        defer_to_trigger(
            self,
            hook=self.hook,
            generation_id=self.generation_id,
            poll_interval=self.poke_interval,
            timeout=self.timeout,
        )

    @fail_without_retries
    def _prepare_output_path(self) -> None:
        """Check ``output_path`` and create its folder before any poll: a result served once only
        is used up by the poll that finds it ready, too late to find the path unwritable."""
        if self.output_path is None and self.hook.service_name != AIMLAPI:
            raise StableAudioConfigError(
                f"output_path is required with a {self.hook.service.title} connection: its result is "
                "the audio itself, not a URL, so it must be stored somewhere"
            )
        prepare_output_path(self.output_path)

    @fail_without_retries
    def poke(self, context: Context) -> PokeReturnValue | bool:
        try:
            # One attempt: the sensor's own schedule is the retry (a poke in reschedule mode must
            # not hold its worker slot sleeping through backoff).
            store_to = self.output_path if self.hook.stores_while_polling else None
            generation = self.hook.get_generation(self.generation_id, max_retries=0, store_to=store_to)
        except StableAudioRetryableError as error:
            self.log.warning("Could not read generation %s this time: %s", self.generation_id, error)
            return False
        if generation.state is GenerationState.PENDING:
            self.log.info("Generation %s is %s", self.generation_id, generation.status)
            return False
        if generation.state is GenerationState.FAILED:
            raise generation_failure(generation)
        self.delivery = deliver_generation(
            context=context,
            hook=self.hook,
            generation=generation,
            output_path=self.output_path,
            log=self.log,
            stored_at=generation.stored_at,
        )
        return PokeReturnValue(is_done=True, xcom_value=self.delivery.result)

    def on_kill(self) -> None:
        """A killed task leaves no partial download behind (the wait itself holds nothing)."""
        from airflow_provider_stableaudio.storage import discard_staged_files

        discard_staged_files()

    @fail_without_retries
    def execute_complete(self, context: Context, event: dict[str, Any]) -> str:
        """Resume after the trigger: fail on anything but a ``success`` event, as a sensor fails."""
        try:
            generation = generation_from_event(event, generation_id=self.generation_id)
            self.delivery = deliver_generation(
                context=context,
                hook=self.hook,
                generation=generation,
                output_path=self.output_path,
                log=self.log,
            )
            return self.delivery.result
        except StableAudioTimeoutError as error:
            self._fail_as_a_sensor(ran_out_of_time(self, error, self.timeout))
        except StableAudioResultGoneError as error:
            self._fail_as_a_sensor(StableAudioResultGoneError(f"{error}{result_gone_hint(event)}"))
        except Exception as error:
            self._fail_as_a_sensor(error)

    def _fail_as_a_sensor(self, error: BaseException) -> NoReturn:
        """Raise what ``BaseSensorOperator`` makes of ``error`` in poke mode, for the deferred path too.

        Running out of time is ``AirflowSensorTimeout`` (never retried), or a skip with
        ``soft_fail``; ``never_fail`` skips on any error.
        """
        from airflow.providers.common.compat.sdk import (
            AirflowFailException,
            AirflowSensorTimeout,
            AirflowSkipException,
            AirflowTaskTimeout,
        )

        failure: BaseException = error
        if isinstance(error, StableAudioTimeoutError):
            failure = AirflowSensorTimeout(str(error))
        soft_failures = (AirflowSensorTimeout, AirflowTaskTimeout, AirflowFailException)
        if not isinstance(error, AirflowSkipException) and (
            self.never_fail or (self.soft_fail and isinstance(failure, soft_failures))
        ):
            setting = "never_fail" if self.never_fail else "soft_fail"
            failure = AirflowSkipException(f"Skipping because {setting} is set: {error}")
        if failure is error:
            raise error
        raise failure from error

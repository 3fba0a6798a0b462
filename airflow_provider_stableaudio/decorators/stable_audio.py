"""``@task.stable_audio``: a TaskFlow task whose function returns the request, run as the operator.

Registered through the provider info's ``task-decorators``, so ``from airflow.sdk import task`` then
``@task.stable_audio(...)`` works once the provider is installed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, NoReturn

from airflow.providers.common.compat.sdk import (
    SET_DURING_EXECUTION,
    DecoratedOperator,
    context_merge,
    determine_kwargs,
    task_decorator_factory,
)

from airflow_provider_stableaudio.exceptions import StableAudioConfigError, StableAudioValidationError
from airflow_provider_stableaudio.generation_request import default_model, returned_fields
from airflow_provider_stableaudio.operators.stable_audio import StableAudioGenerateOperator
from airflow_provider_stableaudio.task_failure import fail_without_retries

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Mapping, Sequence
    from datetime import timedelta

    from airflow.providers.common.compat.sdk import Context, TaskDecorator
    from airflow.triggers.base import BaseTrigger

# How ``execute_complete`` gets the request the function returned: a task resumed from the trigger
# is a new instance, and calling the function again could ask for another clip. The deferral's
# kwargs carry it; ``dag.test()`` drops them (Airflow 3.3.2), so the task's durable state (Airflow
# >= 3.3) keeps a copy too, which the run's automatic retries reuse for the same reason.
RETURNED_KWARG = "returned_request"
RETURNED_STATE_KEY = "stableaudio_returned_request"


class StableAudioDecoratedOperator(DecoratedOperator, StableAudioGenerateOperator):
    """``StableAudioGenerateOperator`` whose request comes from a Python function.

    The function is called on the first try of a run (the task's first, or the first after a
    Clear). With durable task state (Airflow >= 3.3) its automatic retries reuse the request that
    try kept there, so that a function returning another request on each call (the time, a random
    choice) does not make each retry pay for a new clip; without it, every try calls the function
    and submits anew, and says so.

    :param python_callable: returns the prompt (a string) or a dict of request fields (``prompt``,
        ``model`` and the model's own: ``seconds_total`` on the AI/ML API, ``duration``,
        ``init_audio``, ``strength``, ... on Stability AI); a dict's fields replace the decorator's.
    :param op_args: positional arguments of the function (templated).
    :param op_kwargs: keyword arguments of the function (templated).
    """

    template_fields: Sequence[str] = (
        *DecoratedOperator.template_fields,
        *StableAudioGenerateOperator.template_fields,
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {**DecoratedOperator.template_fields_renderers}
    custom_operator_name = "@task.stable_audio"
    # The Rendered Template tab then shows the request the function returned.
    overwrite_rtif_after_execution = True

    def __init__(
        self,
        *,
        python_callable: Callable,
        op_args: Collection[Any] | None = None,
        op_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if "prompt" in kwargs:
            raise StableAudioConfigError(
                "@task.stable_audio takes the prompt from what its function returns, not from prompt="
            )
        super().__init__(
            python_callable=python_callable,
            op_args=op_args,
            op_kwargs=op_kwargs,
            prompt=SET_DURING_EXECUTION,
            **kwargs,
        )
        self.returned_request: dict[str, Any] | None = None

    @fail_without_retries
    def execute(self, context: Context) -> str:
        context_merge(context, self.op_kwargs)
        store = context.get("task_state_store") if self.durable else None
        kept = self._kept_request(store) if self._automatic_retry(context) else None
        if kept is not None:
            self.log.info("Retrying with the request the function returned on the first try of this run")
            self._apply(kept)
            return super().execute(context)
        kwargs = determine_kwargs(self.python_callable, self.op_args, context)
        self._use_request(self.python_callable(*self.op_args, **kwargs))
        if store is not None:
            try:
                store.set(RETURNED_STATE_KEY, self.returned_request)
            except Exception:
                # Carry on: a retry then calls the function again, and pays again (saying so) only
                # if it returns another request.
                self.log.warning("Could not keep the function's request in the task's state", exc_info=True)
        return super().execute(context)

    def _kept_request(self, store: Any) -> dict[str, Any] | None:
        """The request an earlier try of this run kept in the task's state, if one did."""
        if store is None:
            return None
        try:
            kept = store.get(RETURNED_STATE_KEY)
        except Exception:
            self.log.warning("Could not read the function's request from the task's state", exc_info=True)
            return None
        return kept if isinstance(kept, dict) else None

    def _apply(self, fields: dict[str, Any]) -> None:
        """Use request fields the function returned on an earlier call (already checked then)."""
        for field, value in {"prompt": None, **fields}.items():
            setattr(self, field, value)
        self.returned_request = fields

    def _use_request(self, returned: Any) -> None:
        """Take the request fields from what the function returned; raise before any request if bad."""
        name = getattr(self.python_callable, "__name__", "the function")
        try:
            model = self.model if self.model is not None else default_model(self.service.name)
            fields = returned_fields(returned, model=model)
            # The prompt comes from the function only (a dict without one is refused below).
            for field, value in {"prompt": None, **fields}.items():
                setattr(self, field, value)
            self.build_request()
        except StableAudioValidationError as error:
            raise StableAudioValidationError(
                f"@task.stable_audio function {name!r}: {error}", field=error.field
            ) from None
        self.returned_request = fields

    def defer(
        self,
        *,
        trigger: BaseTrigger,
        method_name: str,
        kwargs: dict[str, Any] | None = None,
        timeout: timedelta | int | float | None = None,
    ) -> NoReturn:
        kwargs = {**(kwargs or {}), RETURNED_KWARG: self.returned_request}
        super().defer(trigger=trigger, method_name=method_name, kwargs=kwargs, timeout=timeout)

    @fail_without_retries
    def execute_complete(
        self, context: Context, event: dict[str, Any], returned_request: dict[str, Any] | None = None
    ) -> str:
        """Resume after the trigger with the request the function returned before the deferral."""
        if returned_request is None:
            store = context.get("task_state_store") if self.durable else None
            saved = store.get(RETURNED_STATE_KEY) if store is not None else None
            returned_request = saved if isinstance(saved, dict) else None
        if returned_request is None:
            raise StableAudioConfigError(
                "Cannot resume: the request the function returned before the deferral did not come back "
                "(Airflow's dag.test() drops a deferral's kwargs, and Airflow < 3.3 keeps no task state)"
            )
        self._apply(returned_request)
        return super().execute_complete(context, event)


def stable_audio_task(python_callable: Callable | None = None, **kwargs: Any) -> TaskDecorator:
    """``@task.stable_audio``: the function returns the request, the task generates the clip.

    The decorator takes :class:`StableAudioGenerateOperator`'s arguments (``conn_id``,
    ``output_path``, ``seconds_total``, ``deferrable``, ...) except ``prompt``; the task's return
    value and XComs are the operator's.

    :param python_callable: the decorated function.
    """
    # The task returns the clip's URL, whatever the function's return annotation says.
    kwargs["multiple_outputs"] = False
    return task_decorator_factory(
        python_callable=python_callable,
        decorated_operator_class=StableAudioDecoratedOperator,
        **kwargs,
    )

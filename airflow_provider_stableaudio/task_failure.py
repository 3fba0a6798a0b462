"""Errors that fail a task for good: every retry of the task would meet them again, or pay twice."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from airflow_provider_stableaudio.exceptions import (
    StableAudioConfigError,
    StableAudioContentRefusedError,
    StableAudioModelAccessError,
    StableAudioResultGoneError,
    StableAudioSubmissionUnknownError,
    StableAudioValidationError,
)

if TYPE_CHECKING:
    from collections.abc import Callable

P = ParamSpec("P")
R = TypeVar("R")

# Bad input or configuration fails the same way on every try, and so does content the service's
# moderation refused, or a model the account may not use; a submission of unknown outcome would be
# sent again by a retry and might pay twice, and so would a retry after a paid result was lost
# (expired, or served once only).
FINAL_ERRORS = (
    StableAudioValidationError,
    StableAudioConfigError,
    StableAudioContentRefusedError,
    StableAudioModelAccessError,
    StableAudioResultGoneError,
    StableAudioSubmissionUnknownError,
)


def fail_without_retries(method: Callable[P, R]) -> Callable[P, R]:
    """Wrap a task method so that :data:`FINAL_ERRORS` fail the task without Airflow's retries.

    They are raised as ``AirflowFailException`` (the provider's error is its ``__cause__``); a sensor
    with ``soft_fail`` or ``never_fail`` skips on it, as on any sensor failure.
    """

    @functools.wraps(method)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except FINAL_ERRORS as error:
            from airflow.providers.common.compat.sdk import AirflowFailException

            raise AirflowFailException(str(error)) from error

    return run

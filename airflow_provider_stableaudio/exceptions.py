"""Exceptions raised by the Stable Audio provider (no Airflow imports: usable anywhere)."""

from __future__ import annotations


class StableAudioError(Exception):
    """Base class of every error this provider raises."""


class StableAudioValidationError(StableAudioError, ValueError):
    """A request field is missing, of the wrong type or out of range; raised before any HTTP call."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class StableAudioConfigError(StableAudioError, ValueError):
    """The Airflow connection or an operator setting cannot be used (no API key, bad base URL, ...)."""


class StableAudioAPIError(StableAudioError):
    """The API answered with an error, or could not be reached.

    :param message: what went wrong, already free of secrets.
    :param status_code: the HTTP status, or ``None`` when no response arrived.
    :param request_id: the API's ``requestId`` from its error body, when it sent one.
    """

    def __init__(
        self, message: str, *, status_code: int | None = None, request_id: str | None = None
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.request_id = request_id


class StableAudioPermanentError(StableAudioAPIError):
    """An error that will not go away by retrying: 4xx other than 429 (bad request, key, credits, id)."""


class StableAudioKeyRefusedError(StableAudioPermanentError):
    """The API refused the connection's key (401, 403 while polling): check the key, not the generation."""


class StableAudioModelAccessError(StableAudioPermanentError):
    """The account may not use the model (Stability grants Stable Audio 3 per account): every try
    would be refused the same way."""


class StableAudioRetryableError(StableAudioAPIError):
    """A transient error (429, 5xx, connection error, timeout): worth retrying after ``retry_after`` s."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code, request_id=request_id)
        self.retry_after = retry_after


class StableAudioConnectionError(StableAudioRetryableError):
    """No HTTP answer arrived (refused, reset, timed out).

    :param request_sent: whether the request may have reached the server; ``False`` only when
        the connection was never established.
    """

    def __init__(self, message: str, *, request_sent: bool) -> None:
        super().__init__(message)
        self.request_sent = request_sent


class StableAudioSubmissionUnknownError(StableAudioAPIError):
    """A submission may or may not have created a generation; retrying could pay twice."""


class StableAudioResponseError(StableAudioRetryableError):
    """The API answered 2xx with a body this provider cannot read (malformed JSON, unknown status)."""


class StableAudioGenerationFailed(StableAudioError):
    """The generation ended in the API's ``error``/``failed`` state."""

    @classmethod
    def for_generation(cls, generation_id: str | None, reason: str | None) -> StableAudioGenerationFailed:
        """The error for generation ``generation_id``, with the API's ``reason``."""
        return cls(f"Stable Audio generation {generation_id} failed: {reason or 'the API gave no reason'}")


class StableAudioContentRefusedError(StableAudioGenerationFailed):
    """The service refused the content: the prompt or the input audio was flagged by its moderation
    (HTTP 403 ``content_moderation``) or the result was filtered (``finish_reason`` ``CONTENT_FILTERED``)."""


class StableAudioResultGoneError(StableAudioError):
    """A finished result is no longer served: it expired (Stability keeps results about 24 hours),
    or the service would not serve it a second time. Retrying fetches nothing."""


class StableAudioResultNotFoundError(StableAudioResultGoneError):
    """The service does not know the generation (404): its result expired or was served already, or
    the id is wrong. Nothing was received, unlike a result lost while it was being stored."""


class StableAudioTimeoutError(StableAudioError):
    """The generation did not finish within the allowed time."""


class StableAudioDownloadError(StableAudioError):
    """The audio file could not be downloaded whole; nothing was left at the destination.

    :param url_expired: the URL answered 403/404/410: the file is gone, another try cannot fetch it.
    :param status_code: the HTTP status that ended the download, when one did.
    """

    def __init__(self, message: str, *, url_expired: bool = False, status_code: int | None = None) -> None:
        super().__init__(message)
        self.url_expired = url_expired
        self.status_code = status_code


class StableAudioStorageError(StableAudioError):
    """The store of ``output_path`` failed (whatever its filesystem raised is the ``__cause__``: an
    ``OSError``, botocore's ``NoCredentialsError``, gcsfs's ``HttpError``, ...); nothing was left at
    the target. Raised by itself only before anything was paid for: a later try may succeed."""

"""HTTP error mapping, Retry-After, and reading a connection's fields."""

from __future__ import annotations

import json

import pytest

from airflow_provider_stableaudio.api_errors import (
    MAX_RETRY_AFTER,
    error_from_response,
    parse_retry_after,
    submission_was_rejected,
)
from airflow_provider_stableaudio.exceptions import (
    StableAudioConfigError,
    StableAudioPermanentError,
    StableAudioRetryableError,
)
from airflow_provider_stableaudio.settings import normalize_base_url, settings_from_connection

ENVELOPE_401 = json.dumps(
    {
        "message": "Unauthorized",
        "path": "/v2/generate/audio",
        "requestId": "req-123",
        "statusCode": 401,
        "timestamp": "2026-11-25T00:00:00Z",
    }
)


@pytest.mark.parametrize(
    ("status", "kind"),
    [(400, StableAudioPermanentError), (401, StableAudioPermanentError), (403, StableAudioPermanentError),
     (404, StableAudioPermanentError), (429, StableAudioRetryableError), (500, StableAudioRetryableError),
     (502, StableAudioRetryableError), (503, StableAudioRetryableError), (504, StableAudioRetryableError)],
)  # fmt: skip
def test_status_classes(status: int, kind: type) -> None:
    error = error_from_response(status, "{}", action="poll generation g")
    assert type(error) is kind
    assert error.status_code == status


def test_envelope_message_and_request_id_without_the_key() -> None:
    body = ENVELOPE_401.replace("Unauthorized", "Invalid key sk-secret-123")
    error = error_from_response(401, body.encode(), action="poll generation g", secret="sk-secret-123")
    assert error.request_id == "req-123"
    assert "HTTP 401 to poll generation g: Invalid key ***" in str(error)
    assert "(requestId req-123)" in str(error)
    assert "password (API Key) field" in str(error) or "API key" in str(error)
    assert "sk-secret-123" not in str(error)


def test_non_json_body_is_summarised() -> None:
    error = error_from_response(502, b"<html>\n Bad   gateway </html>", action="poll")
    assert "HTTP 502 to poll: <html> Bad gateway </html>" in str(error)


def test_retry_after_seconds_and_dates() -> None:
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 25 Nov 2026 00:00:10 GMT", now=1795564800.0) == pytest.approx(10.0)
    error = error_from_response(429, "{}", action="poll", retry_after="3")
    assert isinstance(error, StableAudioRetryableError)
    assert error.retry_after == 3.0


@pytest.mark.parametrize(
    ("status", "body", "rejected"),
    [(400, "{}", True), (429, "", True), (503, ENVELOPE_401, True), (500, ENVELOPE_401, True),
     (502, "<html>bad gateway</html>", False), (504, ENVELOPE_401, False), (500, "oops", False)],
)  # fmt: skip
def test_which_failed_submissions_are_safe_to_send_again(status: int, body: str, rejected: bool) -> None:
    assert submission_was_rejected(status, body) is rejected


@pytest.mark.parametrize(
    ("host", "port", "expected"),
    [(None, None, "https://api.aimlapi.com"), ("", None, "https://api.aimlapi.com"),
     ("api.aimlapi.com", None, "https://api.aimlapi.com"), ("https://api.aimlapi.com/", None, "https://api.aimlapi.com"),
     ("http://127.0.0.1:8080", None, "http://127.0.0.1:8080"), ("127.0.0.1", 9000, "https://127.0.0.1:9000")],
)  # fmt: skip
def test_base_url(host: str | None, port: int | None, expected: str) -> None:
    assert normalize_base_url(host, port, conn_id="c") == expected


@pytest.mark.parametrize(
    "host",
    [
        "ftp://example.com",
        "http://",
        "http://host:notaport",
        "https://a b",
        "http://h/?q=1",
        "http//broken",
        "https:/api.aimlapi.com",
    ],
)
def test_malformed_base_url(host: str) -> None:
    with pytest.raises(StableAudioConfigError, match=r"connection 'c' has a malformed Base URL"):
        normalize_base_url(host, None, conn_id="c")


def test_missing_key_and_bad_timeout() -> None:
    with pytest.raises(StableAudioConfigError, match="connection 'c' has no API key"):
        settings_from_connection(conn_id="c", host=None, port=None, password="", extra={})
    with pytest.raises(StableAudioConfigError, match="invalid 'timeout' extra 'x'"):
        settings_from_connection(conn_id="c", host=None, port=None, password="k", extra={"timeout": "x"})
    settings = settings_from_connection(
        conn_id="c", host=None, port=None, password=" sk-distinct ", extra={"timeout": "12"}
    )
    assert (settings.api_key, settings.request_timeout) == ("sk-distinct", 12.0)
    assert "sk-distinct" not in repr(settings)


@pytest.mark.parametrize(("extra", "expected"), [({}, False), ({"results_served_once": None}, False),
                                                 ({"results_served_once": True}, True),
                                                 ({"results_served_once": "true"}, True),
                                                 ({"results_served_once": "False"}, False)])  # fmt: skip
def test_results_served_once_is_a_boolean_extra(extra: dict, expected: bool) -> None:
    settings = settings_from_connection(conn_id="c", host=None, port=None, password="k", extra=extra)
    assert settings.results_served_once is expected


def test_a_results_served_once_extra_that_is_not_a_boolean_names_it() -> None:
    with pytest.raises(StableAudioConfigError, match="invalid 'results_served_once' extra 'yes'"):
        settings_from_connection(
            conn_id="c", host=None, port=None, password="k", extra={"results_served_once": "yes"}
        )


def test_a_stability_connection_defaults_to_stabilitys_url_and_names_its_key() -> None:
    from airflow_provider_stableaudio.services import SERVICES

    stability = SERVICES["stability"]
    settings = settings_from_connection(
        conn_id="s", host="", port=None, password="k", extra={}, service=stability
    )
    assert settings.base_url == "https://api.stability.ai"
    with pytest.raises(StableAudioConfigError, match="put the Stability AI API key in its password"):
        settings_from_connection(conn_id="s", host=None, port=None, password=" ", extra={}, service=stability)


@pytest.mark.parametrize(("value", "expected"), [("inf", None), ("nan", None), ("99999", MAX_RETRY_AFTER)])
def test_retry_after_is_finite_and_bounded(value: str, expected: float | None) -> None:
    assert parse_retry_after(value) == expected


@pytest.mark.parametrize(
    "body",
    [json.dumps({"message": "y" * 100_000, "statusCode": 400}), "<html>" + "z" * 100_000 + "</html>"],
    ids=["envelope", "html"],
)
def test_api_error_text_is_cut_to_a_sane_length(body: str) -> None:
    error = error_from_response(400, body, action="poll generation g")
    assert len(str(error)) < 700
    assert "...(truncated)" in str(error)


def test_a_cut_never_leaves_part_of_the_key() -> None:
    secret = "sk-live-0123456789abcdef"
    body = json.dumps({"message": "a" * 490 + secret, "statusCode": 401})
    error = error_from_response(401, body, action="poll generation g", secret=secret)
    assert secret[:4] not in str(error)

from __future__ import annotations

import json

import pytest

from worker.api.protocol import error_from_response
from worker.core import errors

NOT_FOUND = json.dumps({"message": "User not found.", "code": 500}).encode()
HTML_502 = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"


@pytest.mark.parametrize(
    ("status", "headers", "body", "expected"),
    [
        (200, {}, b'{"email": "a@b.ru", "send": true}', None),
        (200, {}, b'{"success": true}', None),
        (200, {}, NOT_FOUND, errors.UserNotFound),
        (500, {}, NOT_FOUND, errors.UserNotFound),
        (200, {}, b'{"success": false}', errors.ApiError),
        (200, {}, b'{"success": false, "message": "Nope"}', errors.ApiError),
        (200, {}, b'{"message": "Forbidden", "code": 403}', errors.AuthError),
        (200, {}, b'{"message": "Slow down", "code": 429}', errors.RateLimited),
        (200, {}, b'{"message": "Oops", "code": 503}', errors.ServerError),
        (401, {}, b'{"message": "Unauthenticated."}', errors.AuthError),
        (403, {}, b"", errors.AuthError),
        (
            422,
            {},
            b'{"message": "The given data was invalid.", "errors": {"email": ["bad"]}}',
            errors.ValidationError,
        ),
        (400, {}, b"not json", errors.ValidationError),
        (404, {}, b"<html>not found</html>", errors.ApiError),
        (408, {}, b"", errors.ApiTimeout),
        (429, {"retry-after": "3"}, b"", errors.RateLimited),
        (500, {}, b"", errors.ServerError),
        (500, {}, b'{"message": "Server Error"}', errors.ServerError),
        (502, {}, HTML_502, errors.ServerError),
        (503, {}, b"", errors.ServerError),
        (504, {}, b"upstream timed out", errors.ServerError),
        (418, {}, b"", errors.ApiError),
    ],
)
def test_error_mapping(
    status: int, headers: dict[str, str], body: bytes, expected: type[Exception] | None
) -> None:
    error = error_from_response(status, headers, body)
    if expected is None:
        assert error is None
    else:
        assert type(error) is expected


def test_user_not_found_message_is_the_apis() -> None:
    error = error_from_response(200, {}, NOT_FOUND)
    assert f"{type(error).__name__}: {error}" == "UserNotFound: User not found."


def test_validation_error_carries_field_errors() -> None:
    body = b'{"message": "The given data was invalid.", "errors": {"email": ["must be valid"]}}'
    error = error_from_response(422, {}, body)
    assert isinstance(error, errors.ValidationError)
    assert error.errors == {"email": ["must be valid"]}
    assert "email: must be valid" in str(error)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "7"}, 7.0),
        ({"retry-after": "soon"}, None),
        ({"retry-after-ms": "1500"}, 1.5),
        ({}, None),
    ],
)
def test_rate_limited_reads_retry_after(headers: dict[str, str], expected: float | None) -> None:
    error = error_from_response(429, headers, b"")
    assert isinstance(error, errors.RateLimited)
    assert error.retry_after == expected


def test_transient_and_permanent_are_disjoint() -> None:
    for cls in (errors.UserNotFound, errors.AuthError, errors.ValidationError, errors.ApiError):
        assert issubclass(cls, errors.PermanentError)
        assert not issubclass(cls, errors.TransientError)
    for transient in (
        errors.RateLimited,
        errors.ServerError,
        errors.ApiTimeout,
        errors.ApiConnectionError,
    ):
        assert issubclass(transient, errors.TransientError)


@pytest.mark.parametrize(
    "exc",
    [
        errors.UserNotFound("User not found.", status_code=200),
        errors.RateLimited("slow", retry_after=3),
        errors.ValidationError("bad", errors={"email": ["x"]}),
        errors.ServerError("HTTP 502"),
    ],
)
def test_errors_rebuild_from_args_as_celery_does(exc: errors.PlusofonError) -> None:
    rebuilt = type(exc)(*exc.args)
    assert str(rebuilt) == str(exc)


def test_long_bodies_are_cut() -> None:
    body = json.dumps({"message": "x" * 5000, "code": 422}).encode()
    assert len(str(error_from_response(200, {}, body))) < 300

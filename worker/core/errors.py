"""Every error this project raises, in one place.

    VoicemailError
    ├── ConfigError                 a bad environment variable, named
    ├── InputError                  a bad argument, refused before anything is queued
    │   ├── RevertRefused           a bulk that cannot be reverted (now, or at all)
    │   └── NotFound                an id that names nothing: a dead job, a bulk
    ├── QueueUnavailable            Redis (the broker or the result store) cannot be reached
    ├── AccountNotFound             the account is not in the credential store
    ├── CredentialError             the store cannot be read with this VOICEMAIL_SECRET_KEY
    ├── EngineUnavailable           a bulk engine process died; its chunk is re-queued
    ├── Conflict                    a revert found the account changed since: left alone
    │   ├── Stale                   a plan's row found the account changed since the plan
    │   └── Drifted                 `bulk verify`: the account holds other values than asked
    ├── Expired                     an update older than VOICEMAIL_ORDERING_TTL: not applied
    └── PlusofonError               anything the Plusofon API answered or failed to answer
        ├── PermanentError          never retried: the same request fails the same way
        │   ├── UserNotFound        {"message": "User not found.", "code": 500}, HTTP 200 or 500
        │   ├── AuthError           401 / 403: the token is wrong or revoked
        │   ├── ValidationError     400 / 422, with the API's field errors in `.errors`
        │   └── ApiError            any other 4xx, or a 2xx body saying it failed
        └── TransientError          retried with backoff, then re-queued
            ├── RateLimited         429, with `.retry_after` seconds when the API says so
            │   └── CircuitOpen     most recent calls failed: every worker pauses (the breaker)
            ├── ServerError         5xx: without the API's JSON error body, a gateway's: ambiguous
            ├── ApiTimeout          connect / read / write / pool timeout
            └── ApiConnectionError  refused, reset, DNS, protocol errors

Exceptions cross process boundaries through Celery's JSON result backend, which
stores `type(exc).__name__` and `exc.args` and rebuilds with `cls(*args)`. So every
class here takes its message as the only positional argument; extra details are
keyword-only and default to "unknown".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class VoicemailError(Exception):
    """Base of every error raised by voicemail-worker."""

    def __init__(self, message: str = "") -> None:
        super().__init__(message)

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        # What Flower shows of a failure (the task page's `exception`, `/api/task/result`'s
        # `result`), and `JobError.__str__`'s shape: `UserNotFound: User not found.`
        return f"{type(self).__name__}: {self.message}"


class ConfigError(VoicemailError):
    pass


class InputError(VoicemailError):
    pass


class RevertRefused(InputError):
    """The bulk cannot be reverted (not revertible, still running, or reverted already)."""


class NotFound(InputError):
    """An id that names nothing (never issued, or expired): a dead job, a bulk."""


class QueueUnavailable(VoicemailError):
    """Redis (the broker or the result store) cannot be reached."""


class AccountNotFound(VoicemailError):
    pass


class CredentialError(VoicemailError):
    pass


class EngineUnavailable(VoicemailError):
    """The engine process died (killed, out of memory): the chunk is re-queued."""


class ChunkLost(VoicemailError):
    """A bulk chunk's rows were gone from Redis before it ran: its unrecorded lines are
    recorded as failed, and the chunk task fails loudly."""


class Expired(VoicemailError):
    """An update older than VOICEMAIL_ORDERING_TTL when a worker reached it: not applied."""


class Conflict(VoicemailError):
    """A revert found the account changed since the bulk it undoes: it is left alone."""


class Stale(Conflict):
    """`bulk apply`: the account no longer holds what the plan read; it is left alone."""


class Drifted(Conflict):
    """`bulk verify`: the account holds other values than the file asks for (nothing is
    sent; the row is recorded as failed, with what the vendor has)."""


class PlusofonError(VoicemailError):
    """`refused`: the answer (or the failure) proves the request was not applied: the
    API refused it, or it never left this host. Without it, a transient failure is
    ambiguous: the vendor may have applied the request, now or later."""

    def __init__(
        self, message: str = "", *, status_code: int | None = None, refused: bool = False
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.refused = refused or isinstance(self, PermanentError | RateLimited)


class PermanentError(PlusofonError):
    pass


class UserNotFound(PermanentError):
    pass


class AuthError(PermanentError):
    pass


class ValidationError(PermanentError):
    def __init__(
        self,
        message: str = "",
        *,
        status_code: int | None = None,
        errors: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code)
        self.errors: dict[str, list[str]] = {k: list(v) for k, v in (errors or {}).items()}


class ApiError(PermanentError):
    pass


class TransientError(PlusofonError):
    pass


class RateLimited(TransientError):
    def __init__(
        self,
        message: str = "",
        *,
        status_code: int | None = 429,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status_code=status_code)
        self.retry_after = retry_after


class CircuitOpen(RateLimited):
    """Not sent: the shared circuit breaker is open. Waits like a 429, spends no attempt."""


class ServerError(TransientError):
    pass


class ApiTimeout(TransientError):
    pass


class ApiConnectionError(TransientError):
    pass


# What a task never retries (its `throws`), and `voicemail dead retry --all` leaves alone.
PERMANENT: tuple[type[VoicemailError], ...] = (
    PermanentError,
    InputError,
    AccountNotFound,
    CredentialError,
    Expired,
)


def is_permanent(type_name: str) -> bool:
    """Whether an error stored by its class name (a result, a dead letter) is permanent."""
    found = globals().get(type_name)
    return isinstance(found, type) and issubclass(found, PERMANENT)


def describe(exc: BaseException) -> dict[str, Any]:
    """The `{"type", "message"}` pair a poller sees for a failure."""
    return {"type": type(exc).__name__, "message": str(exc)}

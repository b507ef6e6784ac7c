"""Who is calling, and what they may touch: `Authorization: Bearer KEY`.

No key, or one never made or since revoked: 401. A key whose accounts glob does not
match the account in the path: 403. A job or bulk made with one key is visible to that
key only, unless the key's glob is `*` (an operator's key sees everything); another
caller's id answers 404, as an id never issued does, so ids do not leak.
"""

from __future__ import annotations

from typing import Annotated

import redis
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from tasks.producer import QueueUnavailable
from worker.core import keys
from worker.core.connections import text
from worker.core.settings import get_settings

from . import keystore
from .keystore import ApiKey
from .problems import Problem

_bearer = HTTPBearer(auto_error=False, description="An API key from `voicemail apikeys add`.")
REDIS_ERRORS = (redis.ConnectionError, redis.TimeoutError)
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="voicemail"'}


def redis_of(request: Request) -> redis.Redis:
    client: redis.Redis = request.app.state.redis
    return client


def queue_unavailable(exc: Exception) -> QueueUnavailable:
    return QueueUnavailable(f"cannot reach Redis: {type(exc).__name__}")


def caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> ApiKey:
    """The API key of the request; also left on `request.state` for the access log."""
    if credentials is None:
        raise Problem(401, "Unauthorized", "send Authorization: Bearer KEY", _CHALLENGE)
    try:
        key = keystore.lookup(redis_of(request), credentials.credentials)
    except REDIS_ERRORS as exc:
        raise queue_unavailable(exc) from None
    if key is None:
        raise Problem(401, "Unauthorized", "the API key is unknown or revoked", _CHALLENGE)
    request.state.api_key = key.name
    return key


Caller = Annotated[ApiKey, Depends(caller)]


def require_account(key: ApiKey, account: str) -> None:
    if not key.allows(account):
        raise Problem(
            403,
            "Forbidden",
            f"API key {key.name!r} may not use account {account[:80]!r} "
            f"(its accounts: {key.accounts!r})",
        )


def record_owner(client: redis.Redis, key: ApiKey, job_or_bulk_id: str) -> None:
    """Remember who made it, for as long as its result is kept."""
    try:
        client.set(keys.http_owner(job_or_bulk_id), key.name, ex=get_settings().result_expires)
    except REDIS_ERRORS as exc:
        raise queue_unavailable(exc) from None


def may_see(client: redis.Redis, key: ApiKey, job_or_bulk_id: str) -> bool:
    if key.sees_everything:
        return True
    try:
        owner = client.get(keys.http_owner(job_or_bulk_id))
    except REDIS_ERRORS as exc:
        raise queue_unavailable(exc) from None
    return owner is not None and text(owner) == key.name

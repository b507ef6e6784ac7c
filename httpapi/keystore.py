"""API keys of the HTTP API's callers, one per calling service, kept in Redis.

A key is shown once, when it is made; Redis holds only its sha256, so a copy of the
database lets no one call the API. The record is found by that digest (one GET per
request, so a revoke takes effect on the next request), and a hash from name to
digest lists and revokes keys by name.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

import redis

from worker.core import keys
from worker.core.connections import text
from worker.core.errors import InputError

# A prefix that secret scanners (and people) can recognise in a leaked config file.
KEY_PREFIX = "vmk_"
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
EVERY_ACCOUNT = "*"


@dataclass(frozen=True)
class ApiKey:
    name: str
    accounts: str  # an fnmatch glob over account names
    created_at: float

    def allows(self, account: str) -> bool:
        # Case-sensitive on every OS: account names are case-sensitive in the store.
        return fnmatchcase(account, self.accounts)

    @property
    def sees_everything(self) -> bool:
        return self.accounts == EVERY_ACCOUNT

    def as_dict(self) -> dict[str, Any]:
        created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.created_at))
        return {"name": self.name, "accounts": self.accounts, "created_at": created}


def digest(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()


def check_name(name: str) -> str:
    if not NAME_PATTERN.fullmatch(name):
        raise InputError(
            f"an API key name is 1-64 letters, digits, '.', '_' or '-', got {name[:70]!r}"
        )
    return name


def add(client: redis.Redis, name: str, accounts: str = EVERY_ACCOUNT) -> str:
    """Make a key for `name`, allowed the accounts matching `accounts`; returns the key."""
    check_name(name)
    if not accounts or accounts != accounts.strip():
        raise InputError("--accounts must be a non-empty glob without surrounding spaces")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    hashed = digest(key)
    # HSETNX: two `add`s of one name at once make one key, not two that both work.
    if not client.hsetnx(keys.API_KEYS, name, hashed):
        raise InputError(f"an API key named {name!r} exists (revoke it first)")
    record = {"name": name, "accounts": accounts, "created_at": time.time()}
    client.set(keys.api_key(hashed), json.dumps(record))
    return key


def _parse(raw: Any) -> ApiKey | None:
    if raw is None:
        return None
    record = json.loads(raw)
    return ApiKey(str(record["name"]), str(record["accounts"]), float(record["created_at"]))


def lookup(client: redis.Redis, key: str) -> ApiKey | None:
    """The key's record, or None for a key never made or since revoked."""
    if not key.startswith(KEY_PREFIX) or len(key) > 100:
        return None  # not ours: spare Redis the round trip
    return _parse(client.get(keys.api_key(digest(key))))


def list_keys(client: redis.Redis) -> list[ApiKey]:
    hashed = client.hgetall(keys.API_KEYS)
    if not hashed:
        return []
    records = client.mget([keys.api_key(text(d)) for d in hashed.values()])
    found = [key for raw in records if (key := _parse(raw)) is not None]
    return sorted(found, key=lambda k: k.name)


def revoke(client: redis.Redis, name: str) -> bool:
    """Revoke `name`'s key; False if there was none."""
    hashed = client.hget(keys.API_KEYS, name)
    if hashed is None:
        return False
    with client.pipeline(transaction=True) as pipe:
        pipe.delete(keys.api_key(text(hashed)))
        pipe.hdel(keys.API_KEYS, name)
        pipe.execute()
    return True

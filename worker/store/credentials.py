"""The credential store: account name -> API token, shared by every worker through Redis.

Each token is encrypted with AES-256-GCM (a random 96-bit nonce per token) under a key
derived by HKDF from `VOICEMAIL_SECRET_KEY`, stored as `v2.` + base64 of nonce and
ciphertext; the account name is sealed inside the ciphertext so one account's blob
cannot be swapped onto another. Blobs written before, with Fernet (AES-128-CBC +
HMAC-SHA256), still open; `voicemail accounts rotate-key` rewrites them. AES-GCM with
one reusable key object costs about 3 µs a token where Fernet took 30: at a million
accounts that is a third of an import and a tenth of the bulk engine's CPU. The hash
field names (the accounts) are plaintext: producers check that an account exists
without the key.

`PLUSOFON_TOKEN` gives a one-account setup: the worker serves account `default`
from its own environment and marks it in the store so producers see it exists.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import redis
from cryptography.exceptions import InvalidTag
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..api.models import Credentials
from ..core import constants as C
from ..core import keys, lua
from ..core.connections import text as _text
from ..core.errors import AccountNotFound, CredentialError, InputError
from ..core.settings import Settings
from ..core.validation import check_account, check_token

# Stored for `default` when its token lives in the worker's PLUSOFON_TOKEN, not in Redis.
ENV_MARKER = "env:PLUSOFON_TOKEN"

# HSET field new, for each (field, old, new), only where the field still holds old.
REPLACE_SCRIPT = lua.load(__package__, "replace_if_same.lua")


def derive_key(secret: str, purpose: bytes = b"fernet") -> bytes:
    hkdf = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=b"voicemail-worker/credential-store/v1",
        info=purpose,
    )
    return hkdf.derive(secret.encode())


def _fernet(secret: str) -> Fernet:
    return Fernet(base64.urlsafe_b64encode(derive_key(secret)))


def _aesgcm(secret: str) -> AESGCM:
    return AESGCM(derive_key(secret, b"aes-256-gcm"))


V2 = "v2."  # the prefix of an AES-GCM blob


def key_fingerprint(secret: str) -> str:
    return hashlib.sha256(derive_key(secret, b"fingerprint")).hexdigest()[:16]


@dataclass(frozen=True)
class AccountRow:
    account: str
    token: str
    client_id: int | None = None

    def __repr__(self) -> str:
        return f"AccountRow(account={self.account!r}, client_id={self.client_id!r})"


class Cipher:
    """Seals and opens one account's token; needs only the key, not Redis."""

    def __init__(
        self,
        secret_key: str | None,
        env_token: str | None = None,
        old_keys: Sequence[str] = (),
    ) -> None:
        self.secret = secret_key
        self.old_keys = list(old_keys)
        # New blobs are sealed with the current key; the old ones still open during a rotation.
        keys = [secret_key, *self.old_keys] if secret_key else []
        self._fernet: MultiFernet | None = MultiFernet([_fernet(k) for k in keys]) if keys else None
        self._aead = [_aesgcm(k) for k in keys]  # the current key first
        self.env_token = env_token

    @classmethod
    def from_settings(cls, settings: Settings) -> Cipher:
        return cls(
            settings.secret_key.get_secret_value() if settings.secret_key else None,
            settings.token.get_secret_value() if settings.token else None,
            settings.old_secret_keys(),
        )

    def fingerprints(self) -> set[str]:
        return {key_fingerprint(k) for k in [self.secret, *self.old_keys] if k}

    def require_key(self) -> MultiFernet:
        if self._fernet is None:
            raise CredentialError(
                "VOICEMAIL_SECRET_KEY is not set: it is needed to read or write account tokens"
            )
        return self._fernet

    def seal(self, row: AccountRow) -> str:
        self.require_key()
        plain = json.dumps({"a": row.account, "t": row.token, "c": row.client_id})
        nonce = os.urandom(12)
        sealed = nonce + self._aead[0].encrypt(nonce, plain.encode(), None)
        return V2 + base64.urlsafe_b64encode(sealed).decode()

    def _decrypt(self, text: str) -> bytes:
        if not text.startswith(V2):
            return self.require_key().decrypt(text.encode())  # a Fernet blob, from before
        self.require_key()
        raw = base64.urlsafe_b64decode(text[len(V2) :])
        for aead in self._aead:
            try:
                return aead.decrypt(raw[:12], raw[12:], None)
            except InvalidTag:
                continue
        raise InvalidToken

    def open(self, account: str, blob: bytes | str | None) -> Credentials:
        """The credentials of `account` from its stored blob (None: not in the store)."""
        if account == C.DEFAULT_ACCOUNT and self.env_token:
            return Credentials(account, self.env_token)
        if blob is None:
            raise AccountNotFound(f"account {account!r} is not in the credential store")
        text = _text(blob)
        if text == ENV_MARKER:
            raise CredentialError(
                f"account {account!r} is served from PLUSOFON_TOKEN, which this worker lacks"
            )
        try:
            plain = self._decrypt(text)
        except (InvalidToken, ValueError):
            raise CredentialError(
                f"cannot decrypt the token of account {account!r}: "
                "VOICEMAIL_SECRET_KEY differs from the key it was imported with"
            ) from None
        data: dict[str, Any] = json.loads(plain)
        if data.get("a") != account:
            raise CredentialError(f"the stored token of account {account!r} belongs elsewhere")
        client = data.get("c")
        try:
            token = check_token(data["t"])
        except InputError:  # sealed before tokens were checked: never hand it to a transport
            raise CredentialError(
                f"the stored token of account {account!r} is not a valid header value: "
                "import it again"
            ) from None
        return Credentials(account, token, int(client) if client is not None else None)


class CredentialStore:
    def __init__(
        self,
        client: redis.Redis,
        secret_key: str | None,
        *,
        env_token: str | None = None,
        old_keys: Sequence[str] = (),
    ) -> None:
        self._redis = client
        self.cipher = Cipher(secret_key, env_token, old_keys)
        self._replace = client.register_script(REPLACE_SCRIPT)

    @classmethod
    def from_settings(cls, settings: Settings, client: redis.Redis) -> CredentialStore:
        return cls(
            client,
            settings.secret_key.get_secret_value() if settings.secret_key else None,
            env_token=settings.token.get_secret_value() if settings.token else None,
            old_keys=settings.old_secret_keys(),
        )

    def check_key(self) -> None:
        """Refuse to mix keys: the store keeps the fingerprint of the key it was written with."""
        self.cipher.require_key()
        assert self.cipher.secret is not None
        mine = key_fingerprint(self.cipher.secret)
        theirs = self._redis.get(keys.ACCOUNTS_CHECK)
        if theirs is None:
            self._redis.set(keys.ACCOUNTS_CHECK, mine, nx=True)
            theirs = self._redis.get(keys.ACCOUNTS_CHECK)
        if theirs is not None and _text(theirs) not in self.cipher.fingerprints():
            raise CredentialError(
                "VOICEMAIL_SECRET_KEY differs from the key this credential store was written with"
                " (to change keys, see `voicemail accounts rotate-key`)"
            )

    def rotate_key(self) -> int:
        """Seal every token again with VOICEMAIL_SECRET_KEY; the old keys open them."""
        self.check_key()
        rotated = 0
        cursor = 0
        while True:
            answer: Any = self._redis.hscan(keys.ACCOUNTS, cursor, count=1000)
            cursor, page = answer
            triples: list[str] = []
            for account, blob in page.items():
                text = _text(blob)
                if text == ENV_MARKER:
                    continue
                name = _text(account)
                creds = self.cipher.open(name, text)  # refuses a blob no key opens
                triples += [
                    name,
                    text,
                    self.cipher.seal(AccountRow(name, creds.token, creds.client_id)),
                ]
            # Each token is replaced only if it is still the one read: a token imported
            # meanwhile (sealed with the new key already) is never overwritten.
            if triples:
                rotated += int(self._replace(keys=[keys.ACCOUNTS], args=triples))
            if cursor == 0:
                break
        assert self.cipher.secret is not None
        self._redis.set(keys.ACCOUNTS_CHECK, key_fingerprint(self.cipher.secret))
        return rotated

    def put_many(self, rows: Iterable[AccountRow], batch: int = 2000) -> int:
        """Seal and store `rows`, streamed: `batch` accounts per HSET."""
        self.check_key()
        count = 0
        pending: dict[str, str] = {}
        for row in rows:
            pending[row.account] = self.cipher.seal(row)
            if len(pending) >= batch:
                count += self._write(pending)
        return count + self._write(pending)

    def _write(self, pending: dict[str, str]) -> int:
        written = len(pending)
        if pending:
            self._redis.hset(keys.ACCOUNTS, mapping=pending)  # type: ignore[arg-type]
            pending.clear()
        return written

    def put(self, account: str, token: str, client_id: int | None = None) -> None:
        self.put_many([AccountRow(check_account(account), check_token(token), client_id)])

    def remove(self, account: str) -> bool:
        return bool(self._redis.hdel(keys.ACCOUNTS, account))

    def names(self) -> list[str]:
        return sorted(_text(k) for k in self._redis.hkeys(keys.ACCOUNTS))

    def exists(self, account: str) -> bool:
        if self.exists_env(account):
            return True
        return bool(self._redis.hexists(keys.ACCOUNTS, account))

    def missing(self, accounts: Iterable[str]) -> set[str]:
        """Which of `accounts` are not in the store (one round trip)."""
        wanted = list(dict.fromkeys(accounts))
        if not wanted:
            return set()
        with self._redis.pipeline(transaction=False) as pipe:
            for account in wanted:
                pipe.hexists(keys.ACCOUNTS, account)
            found = pipe.execute()
        return {a for a, ok in zip(wanted, found, strict=True) if not ok and not self.exists_env(a)}

    def exists_env(self, account: str) -> bool:
        return account == C.DEFAULT_ACCOUNT and bool(self.cipher.env_token)

    def mark_env_account(self) -> None:
        """Advertise `default` to producers when this worker serves it from PLUSOFON_TOKEN."""
        if self.cipher.env_token:
            self._redis.hsetnx(keys.ACCOUNTS, C.DEFAULT_ACCOUNT, ENV_MARKER)

    def get(self, account: str) -> Credentials:
        blob = None if self.exists_env(account) else self._redis.hget(keys.ACCOUNTS, account)
        return self.cipher.open(account, blob)

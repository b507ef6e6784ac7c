from __future__ import annotations

import io
from typing import Any

import fakeredis
import pytest
import redis

from worker.core import keys
from worker.core.errors import AccountNotFound, CredentialError, InputError
from worker.store.credentials import ENV_MARKER, AccountRow, CredentialStore

KEY = "a" * 40
OTHER_KEY = "b" * 40


@pytest.fixture
def fake() -> fakeredis.FakeRedis:
    return fakeredis.FakeRedis()


def test_roundtrip_and_encrypted_at_rest(fake: fakeredis.FakeRedis) -> None:
    store = CredentialStore(fake, KEY)
    store.put("acme", "very-secret-token", client_id=42)
    creds = store.get("acme")
    assert (creds.account, creds.token, creds.client_id) == ("acme", "very-secret-token", 42)
    raw = fake.hget(keys.ACCOUNTS, "acme")
    assert raw is not None and b"very-secret-token" not in raw
    assert "very-secret-token" not in repr(creds)


def test_names_exists_remove(fake: fakeredis.FakeRedis) -> None:
    store = CredentialStore(fake, KEY)
    store.put_many([AccountRow("b", "t1"), AccountRow("a", "t2")])
    assert store.names() == ["a", "b"]
    assert store.exists("a") and not store.exists("c")
    assert store.missing(["a", "c", "d"]) == {"c", "d"}
    assert store.remove("a") and not store.remove("a")
    with pytest.raises(AccountNotFound, match="'a'"):
        store.get("a")


def test_wrong_key_is_refused(fake: fakeredis.FakeRedis) -> None:
    CredentialStore(fake, KEY).put("acme", "tok")
    other = CredentialStore(fake, OTHER_KEY)
    with pytest.raises(CredentialError, match="VOICEMAIL_SECRET_KEY"):
        other.get("acme")
    with pytest.raises(CredentialError, match="differs"):
        other.put("new", "tok")


def test_swapped_ciphertext_is_refused(fake: fakeredis.FakeRedis) -> None:
    store = CredentialStore(fake, KEY)
    store.put("a", "tok-a")
    fake.hset(keys.ACCOUNTS, "b", fake.hget(keys.ACCOUNTS, "a") or b"")
    with pytest.raises(CredentialError, match="belongs elsewhere"):
        store.get("b")


def test_no_key_means_no_tokens(fake: fakeredis.FakeRedis) -> None:
    CredentialStore(fake, KEY).put("acme", "tok")
    keyless = CredentialStore(fake, None)
    assert keyless.exists("acme")  # producers check existence without the key
    with pytest.raises(CredentialError, match="VOICEMAIL_SECRET_KEY is not set"):
        keyless.get("acme")


def test_env_token_serves_default(fake: fakeredis.FakeRedis) -> None:
    worker_side = CredentialStore(fake, None, env_token="env-tok")
    assert worker_side.get("default").token == "env-tok"
    worker_side.mark_env_account()
    assert fake.hget(keys.ACCOUNTS, "default") == ENV_MARKER.encode()
    producer_side = CredentialStore(fake, None)
    assert producer_side.exists("default")
    with pytest.raises(CredentialError, match="PLUSOFON_TOKEN"):
        producer_side.get("default")


def test_on_real_redis(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    store = CredentialStore(client, "test-secret-key-" + "k" * 32)
    store.put("real-redis-account", "real-redis-token")
    assert store.get("real-redis-account").token == "real-redis-token"
    assert store.remove("real-redis-account")
    client.close()


def test_rotate_key(fake: fakeredis.FakeRedis) -> None:
    CredentialStore(fake, KEY).put_many([AccountRow("a", "tok-a"), AccountRow("b", "tok-b", 7)])
    before = fake.hget(keys.ACCOUNTS, "a")
    # During the rotation: the new key, with the old one still able to open tokens.
    rotating = CredentialStore(fake, OTHER_KEY, old_keys=[KEY])
    assert rotating.get("a").token == "tok-a"
    assert rotating.rotate_key() == 2
    assert fake.hget(keys.ACCOUNTS, "a") != before
    after = CredentialStore(fake, OTHER_KEY)  # old key gone
    assert after.get("b").token == "tok-b"
    assert after.get("b").client_id == 7
    after.put("c", "tok-c")  # the store now answers to the new key
    with pytest.raises(CredentialError):
        CredentialStore(fake, KEY).get("a")


def test_a_large_import_is_written_in_batches(fake: fakeredis.FakeRedis) -> None:
    rows = (AccountRow(f"bulk-{i:05d}", f"tok-{i:05d}") for i in range(5000))
    store = CredentialStore(fake, KEY)
    assert store.put_many(rows, batch=700) == 5000
    assert store.get("bulk-04999").token == "tok-04999"
    assert fake.hlen(keys.ACCOUNTS) == 5000


def test_tokens_sealed_with_fernet_before_still_open_and_rotate(
    fake: fakeredis.FakeRedis,
) -> None:
    import json

    from worker.store.credentials import _fernet

    legacy = _fernet(KEY).encrypt(json.dumps({"a": "old", "t": "tok-old", "c": None}).encode())
    fake.hset(keys.ACCOUNTS, "old", legacy)
    store = CredentialStore(fake, KEY)
    assert store.get("old").token == "tok-old"
    assert store.rotate_key() == 1
    assert str(fake.hget(keys.ACCOUNTS, "old")).startswith("b'v2.")
    assert store.get("old").token == "tok-old"


def test_rotation_never_overwrites_a_token_imported_meanwhile(fake: fakeredis.FakeRedis) -> None:
    """rotate-key reads, seals again and writes back: a token imported between the read
    and the write (sealed with the new key already) must survive it."""
    CredentialStore(fake, KEY).put_many(
        [AccountRow("rot-a", "old-a"), AccountRow("rot-b", "old-b")]
    )
    rotating = CredentialStore(fake, OTHER_KEY, old_keys=[KEY])
    importer = CredentialStore(fake, OTHER_KEY, old_keys=[KEY])
    opened = rotating.cipher.open

    def open_then_import(account: str, blob: bytes | str | None) -> Any:
        creds = opened(account, blob)
        if account == "rot-a":  # an import lands after rotate-key read this account
            importer.put("rot-a", "new-a")
        return creds

    rotating.cipher.open = open_then_import  # type: ignore[method-assign]
    assert rotating.rotate_key() >= 1
    after = CredentialStore(fake, OTHER_KEY)
    assert after.get("rot-a").token == "new-a"
    assert after.get("rot-b").token == "old-b"


def test_tokens_are_stripped_and_control_characters_refused(fake: fakeredis.FakeRedis) -> None:
    store = CredentialStore(fake, KEY)
    store.put("strip", "tok-1\n")
    assert store.get("strip").token == "tok-1"
    with pytest.raises(InputError) as refused:
        store.put("bad", "Bearer\r\nX-Evil: secret-tok")
    assert "secret-tok" not in str(refused.value)
    assert "U+000D" in str(refused.value)


def test_a_stored_token_a_header_cannot_carry_never_reaches_a_transport(
    fake: fakeredis.FakeRedis,
) -> None:
    """Sealed before tokens were checked: opening it is a CredentialError without it."""
    store = CredentialStore(fake, KEY)
    fake.hset(keys.ACCOUNTS, "legacy", store.cipher.seal(AccountRow("legacy", "tok\nleak")))
    with pytest.raises(CredentialError) as refused:
        store.get("legacy")
    assert "leak" not in str(refused.value)


def test_an_import_names_the_line_where_a_bad_token_record_starts() -> None:
    from cli.accounts import read_account_rows

    text = 'account,token\nok,tok-1\nbad,"tok\nsplit"\nalso-ok,tok-2\n'
    errors: list[str] = []
    rows = list(read_account_rows(io.StringIO(text), errors))
    assert [r.account for r in rows] == ["ok", "also-ok"]
    assert len(errors) == 1
    assert errors[0].startswith("line 3: ")
    assert "split" not in errors[0]


def test_plusofon_token_is_stripped_and_checked() -> None:
    from worker.core.errors import ConfigError
    from worker.core.settings import load_settings

    assert load_settings(PLUSOFON_TOKEN="tok-9\n").token.get_secret_value() == "tok-9"  # type: ignore[union-attr]
    with pytest.raises(ConfigError) as refused:
        load_settings(PLUSOFON_TOKEN="tok\x07secret")
    assert "PLUSOFON_TOKEN" in str(refused.value)
    assert "secret" not in str(refused.value)

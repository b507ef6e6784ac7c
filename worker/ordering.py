"""Per-account order for updates: a later update is never overwritten by an earlier one.

Every update gets a sequence number per account when it is enqueued (`next_seq`,
an INCR). Just before its PATCH, a worker claims the account: one Lua call that
checks the highest sequence already applied and takes the account's lock. So:

- an update older than one already applied is skipped (`SUPERSEDED`);
- an update whose own number is already applied, a redelivery, is skipped
  (`APPLIED`): at-least-once delivery, applied once;
- two updates of one account never run at the same time (`LOCKED`: try later).

After the PATCH, `release` raises the applied number and drops the lock. A lock
held by a worker that died lapses after `LOCK_TTL` seconds; a bulk chunk whose rows
wait their turn (a low rate limit) renews the locks it still holds (`RENEW_SCRIPT`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from . import _constants as C

CLAIMED, SUPERSEDED, APPLIED, LOCKED = 1, 0, 2, -1
LOCK_TTL = 120  # longer than one row's in-process retries can take

# KEYS: lock, applied per account. ARGV: owner, ttl ms, then one seq per account.
CLAIM_SCRIPT = """
local out = {}
local owner, ttl = ARGV[1], tonumber(ARGV[2])
for i = 1, #KEYS, 2 do
  local seq = tonumber(ARGV[2 + (i + 1) / 2])
  local applied = tonumber(redis.call('GET', KEYS[i + 1]) or '0')
  if applied > seq then
    out[#out + 1] = 0
  elseif applied == seq then
    out[#out + 1] = 2
  else
    local holder = redis.call('GET', KEYS[i])
    if holder and holder ~= owner then
      out[#out + 1] = -1
    else
      redis.call('SET', KEYS[i], owner, 'PX', ttl)
      out[#out + 1] = 1
    end
  end
end
return out
"""

# KEYS: lock, applied per account. ARGV: owner, then per account: seq, "1" if applied.
RELEASE_SCRIPT = """
local owner = ARGV[1]
local j = 0
for i = 1, #KEYS, 2 do
  local seq, ok = tonumber(ARGV[2 + 2 * j]), ARGV[3 + 2 * j]
  if ok == '1' then
    local applied = tonumber(redis.call('GET', KEYS[i + 1]) or '0')
    if seq > applied then redis.call('SET', KEYS[i + 1], seq) end
  end
  if redis.call('GET', KEYS[i]) == owner then redis.call('DEL', KEYS[i]) end
  j = j + 1
end
return j
"""


# KEYS: locks. ARGV: owner, ttl ms. Extends the locks this owner still holds.
RENEW_SCRIPT = """
local renewed = 0
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] then
    redis.call('PEXPIRE', KEYS[i], tonumber(ARGV[2]))
    renewed = renewed + 1
  end
end
return renewed
"""


def seq_key(account: str) -> str:
    return f"{C.KEY_PREFIX}seq:{{{account}}}"


def lock_key(account: str) -> str:
    return f"{C.KEY_PREFIX}lock:{{{account}}}"


def applied_key(account: str) -> str:
    return f"{C.KEY_PREFIX}applied:{{{account}}}"


def claim_call(owner: str, items: Sequence[tuple[str, int]]) -> tuple[list[str], list[Any]]:
    keys: list[str] = []
    for account, _ in items:
        keys += [lock_key(account), applied_key(account)]
    return keys, [owner, LOCK_TTL * 1000, *(seq for _, seq in items)]


def release_call(owner: str, items: Sequence[tuple[str, int, bool]]) -> tuple[list[str], list[Any]]:
    keys: list[str] = []
    args: list[Any] = [owner]
    for account, seq, applied in items:
        keys += [lock_key(account), applied_key(account)]
        args += [seq, "1" if applied else "0"]
    return keys, args

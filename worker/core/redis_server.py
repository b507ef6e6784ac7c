"""Is this Redis fit to hold the fences? Its eviction policy and its persistence.

Every key the correctness story rests on has a TTL (heartbeats, locks, applied numbers,
chunks, reaped marks, idempotency claims). Under memory pressure a `volatile-*` policy,
common on managed Redis, evicts exactly those, and `allkeys-*` evicts anything: only
`noeviction` keeps them (a full Redis then refuses writes, which callers see and retry).
Without AOF or RDB a restart loses queued jobs, ordering state and the credential store.

Read from `INFO` first (managed Redis may disable `CONFIG`), then `CONFIG GET`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .connections import text

SAFE_POLICY = "noeviction"


@dataclass(frozen=True)
class ServerFitness:
    problem: str | None = None  # one line naming the policy found and the fix
    warnings: list[str] = field(default_factory=list)


def _config(client: Any, name: str) -> str | None:
    try:
        found = client.config_get(name)
    except Exception:  # CONFIG disabled or renamed (managed Redis)
        return None
    value = found.get(name) if isinstance(found, dict) else None
    return None if value is None else text(value)


def eviction_policy(client: Any) -> str | None:
    policy = client.info("memory").get("maxmemory_policy")
    return text(policy) if policy is not None else _config(client, "maxmemory-policy")


def persistence(client: Any) -> str | None:
    """ "AOF", "RDB", "AOF and RDB", "none", or None when Redis would not say."""
    aof = client.info("persistence").get("aof_enabled")
    save = _config(client, "save")
    if aof is None and save is None:
        return None
    kinds = [kind for kind, on in (("AOF", str(aof) == "1"), ("RDB", bool(save))) if on]
    return " and ".join(kinds) or "none"


def check_server(client: Any) -> ServerFitness:
    warnings: list[str] = []
    policy = eviction_policy(client)
    problem = None
    if policy is None:
        warnings.append("could not read Redis's maxmemory-policy; it must be noeviction")
    elif policy != SAFE_POLICY:
        problem = (
            f"Redis maxmemory-policy is {policy}: under memory pressure it evicts the keys "
            f"that keep updates in order and jobs from being lost; set maxmemory-policy "
            f"{SAFE_POLICY} (or VOICEMAIL_ALLOW_EVICTION=1 to run anyway)"
        )
    kept = persistence(client)
    if kept is None:
        warnings.append("could not tell whether Redis persists its data (AOF or RDB)")
    elif kept == "none":
        warnings.append(
            "Redis persists nothing (neither AOF nor RDB): a restart loses queued jobs, "
            "ordering state and the credential store; turn on appendonly"
        )
    return ServerFitness(problem, warnings)

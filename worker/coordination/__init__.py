"""State that workers, engine processes and producers share through Redis: per-account
update order, the shared rate limit, the circuit breaker, request statistics, and the
records of a bulk (its rows, outcomes and status).

Each module owns its keys and the Lua scripts (`.lua` files beside it) that change them.
May import: `worker.core`.
"""

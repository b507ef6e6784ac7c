"""The credential store: account name -> API token, encrypted, shared through Redis.

May import: `worker.core`, `worker.api` (its models only).
"""

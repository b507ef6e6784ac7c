"""The queue runtime: the Celery app and its configuration (`app`), the result backend,
job tracking and recovery, dead letters, message leases and worker heartbeats (`lease`,
`liveness`), the kombu work-arounds (`kombu_patches`), and the worker context with the
worker-side signal handlers (`context`, `worker_signals`).

A producer imports `app` (and what it imports) only; `worker_signals` is installed in
worker processes by `celery -A worker worker`.
May import: `worker.core`, `worker.api`, `worker.store`, `worker.coordination`,
`worker.engine`.
"""

"""voicemail-worker for other services, under a name no host project already uses.

    from voicemail_worker.producer import Producer, enqueue_update, wait
    from voicemail_worker.bulk import submit_bulk, bulk_status

The same API as `tasks` and `tasks.bulk` (`from tasks import ...` keeps working), for a
service with a `tasks` module of its own: when the name `tasks` is the host's, our
package is loaded under `voicemail_worker._tasks` instead (`_load`). Importing it builds
no Celery app, sets no current app, connects no signal and patches nothing.
May import: `tasks` (through `_load`), `worker`.
"""

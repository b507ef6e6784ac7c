"""The bulk engine: chunks of a bulk run on asyncio in a pool of engine processes.

`pool.Engine` is what a worker holds (in its `WorkerContext`); `chunk.process_chunk`
is what each engine process runs, with one `EngineContext` per process.
Only worker processes import this package: producers never load aiohttp or the engine.
May import: `worker.core`, `worker.api`, `worker.store`, `worker.coordination`.
"""

"""Local runs: `voicemail demo` and `voicemail simulator` (never production)."""

from __future__ import annotations

import sys

import click


@click.command()
@click.option("--keep-logs", is_flag=True, help="Keep the demo's log directory.")
def demo(keep_logs: bool) -> None:
    """Run the whole pipeline locally: Redis, simulator, a worker, and some jobs."""
    from .demo import run_demo

    sys.exit(run_demo(keep_logs=keep_logs))


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8080, show_default=True)
@click.option("--latency-ms", type=float, default=0.0, show_default=True)
@click.option("--generate", type=int, default=0, help="Create N accounts acct-NNNNNN.")
def simulator(host: str, port: int, latency_ms: float, generate: int) -> None:
    """Run the Plusofon API simulator (for local runs and tests; never production)."""
    from simulator.server import run

    run(host, port, latency_ms=latency_ms, generate=generate)

"""The `voicemail` command line.

Job commands print one JSON object on stdout and exit 0 only on SUCCESS.
Expected errors print one line on stderr and exit 2; a job that failed, is
unknown or did not finish in time exits 1.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import sys
from collections.abc import Iterator
from typing import IO, Any, NoReturn

import click
import redis

from worker.errors import VoicemailError

EXIT_JOB_NOT_OK = 1
EXIT_ERROR = 2


def _fail(message: str) -> NoReturn:
    click.echo(f"voicemail: error: {message}", err=True)
    sys.exit(EXIT_ERROR)


def _emit(obj: dict[str, Any]) -> None:
    click.echo(json.dumps(obj, ensure_ascii=False))


def _report(job_id: str, wait: bool, timeout: float) -> None:
    from .producer import wait as wait_for

    if not wait:
        _emit({"id": job_id})
        return
    status = wait_for(job_id, timeout)
    _emit(status.as_dict())
    if not status.ok:
        sys.exit(EXIT_JOB_NOT_OK)


class _Group(click.Group):
    """Turns our expected errors into one line on stderr, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except VoicemailError as exc:
            _fail(str(exc))
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            _fail(f"cannot reach Redis: {exc}")


@click.group(cls=_Group)
@click.version_option(package_name="voicemail-worker")
def cli() -> None:
    """Read and change Plusofon voicemail settings through the job queue."""


wait_option = click.option("--wait", is_flag=True, help="Wait for the result and print it.")
timeout_option = click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    help="Seconds to wait with --wait.",
)


@cli.command()
@click.argument("account")
@wait_option
@timeout_option
def get(account: str, wait: bool, timeout: float) -> None:
    """Enqueue a read of ACCOUNT's voicemail settings."""
    from .producer import enqueue_get

    _report(enqueue_get(account), wait, timeout)


@cli.command()
@click.argument("account")
@click.option("--send/--no-send", "send", default=None, help="Turn sending recordings on or off.")
@click.option("--email", required=True, help="Where recordings are sent.")
@click.option("--idempotency-key", help="Repeating the command with this key queues nothing new.")
@wait_option
@timeout_option
def update(
    account: str,
    send: bool | None,
    email: str,
    idempotency_key: str | None,
    wait: bool,
    timeout: float,
) -> None:
    """Enqueue a change of ACCOUNT's voicemail settings."""
    from .producer import enqueue_update

    if send is None:
        raise click.UsageError("one of --send or --no-send is required")
    _report(enqueue_update(account, send, email, idempotency_key=idempotency_key), wait, timeout)


@cli.command()
@click.argument("job_id")
@wait_option
@timeout_option
def result(job_id: str, wait: bool, timeout: float) -> None:
    """Show the state and result of any job id."""
    from .producer import poll
    from .producer import wait as wait_for

    status = wait_for(job_id, timeout) if wait else poll(job_id)
    _emit(status.as_dict())
    if not status.ok:
        sys.exit(EXIT_JOB_NOT_OK)


@cli.group()
def accounts() -> None:
    """Manage the encrypted credential store."""


def _open_text(path: str) -> IO[str]:
    if path == "-":
        return io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8-sig", newline="")
    try:
        return open(path, encoding="utf-8-sig", newline="")
    except OSError as exc:
        _fail(f"cannot read {path}: {exc.strerror}")


def read_account_rows(fh: IO[str], errors: list[str]) -> Iterator[Any]:
    """Yield good rows of an `account,token[,client]` CSV; bad ones go to `errors`."""
    from worker.credentials import AccountRow
    from worker.validation import check_account

    reader = csv.DictReader(fh)
    header = [h.strip() for h in reader.fieldnames or []]
    missing = {"account", "token"} - set(header)
    if missing:
        raise VoicemailError(
            f"the CSV header must name account,token (optional client); missing {sorted(missing)}"
        )
    reader.fieldnames = header
    seen: dict[str, int] = {}
    for row in reader:
        line = reader.line_num
        try:
            name = check_account((row.get("account") or "").strip())
            token = (row.get("token") or "").strip()
            if not token:
                raise VoicemailError("token is empty")
            client_text = (row.get("client") or "").strip()
            if client_text and not client_text.isdigit():
                raise VoicemailError(f"client must be a number, got {client_text[:20]!r}")
            if name in seen:
                raise VoicemailError(f"account {name!r} already given on line {seen[name]}")
        except VoicemailError as exc:
            errors.append(f"line {line}: {exc}")
            continue
        seen[name] = line
        yield AccountRow(name, token, int(client_text) if client_text else None)


@accounts.command("import")
@click.argument("file")
def accounts_import(file: str) -> None:
    """Import accounts from a CSV FILE with header account,token[,client] (- for stdin)."""
    from worker.settings import get_settings

    from .producer import credential_store

    if get_settings().secret_key is None:
        _fail("VOICEMAIL_SECRET_KEY is not set: tokens are stored encrypted with it")
    errors: list[str] = []
    with _open_text(file) as fh:
        count = credential_store().put_many(read_account_rows(fh, errors))
    for error in errors:
        click.echo(f"voicemail: {file}: {error}", err=True)
    _emit({"imported": count, "refused": len(errors)})
    if errors:
        sys.exit(EXIT_JOB_NOT_OK)


@accounts.command("rotate-key")
def accounts_rotate_key() -> None:
    """Seal every token again with VOICEMAIL_SECRET_KEY (old keys in VOICEMAIL_OLD_SECRET_KEYS).

    1. Run workers with the new VOICEMAIL_SECRET_KEY and the old one in
       VOICEMAIL_OLD_SECRET_KEYS: they read tokens sealed with either.
    2. Run this command once.
    3. Remove VOICEMAIL_OLD_SECRET_KEYS everywhere.
    """
    from worker.settings import get_settings

    from .producer import credential_store

    settings = get_settings()
    if settings.secret_key is None:
        _fail("VOICEMAIL_SECRET_KEY is not set: it is the new key to seal tokens with")
    if not settings.old_secret_keys():
        _fail(
            "VOICEMAIL_OLD_SECRET_KEYS is not set: it holds the key(s) tokens are sealed with now"
        )
    _emit({"rotated": credential_store().rotate_key()})


@accounts.command("list")
def accounts_list() -> None:
    """List account names (never tokens)."""
    from .producer import credential_store

    for name in credential_store().names():
        click.echo(name)


@accounts.command("remove")
@click.argument("name")
def accounts_remove(name: str) -> None:
    """Remove account NAME from the store."""
    from .producer import credential_store

    if not credential_store().remove(name):
        _fail(f"account {name!r} is not in the credential store")
    click.echo(f"removed {name}", err=True)


@cli.group()
def bulk() -> None:
    """Update many accounts at once from a CSV or JSON Lines file."""


def _follow(bulk_id: str, timeout: float) -> Any:
    """Show a progress bar on stderr until the bulk is done; return its final status."""
    import time

    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from .bulk import bulk_status

    deadline = time.monotonic() + timeout
    columns = (
        TextColumn("bulk {task.fields[bulk_id]:.8}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]:>7.0f}/s"),
        TextColumn("failed {task.fields[failed]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        bar = progress.add_task("bulk", total=None, bulk_id=bulk_id, rate=0.0, failed=0)
        while True:
            status = bulk_status(bulk_id)
            progress.update(
                bar,
                total=status.total or None,
                completed=status.total - status.pending,
                rate=status.rate,
                failed=status.failed,
            )
            if status.done or time.monotonic() > deadline:
                return status
            time.sleep(0.2)


def _finish(status: Any, wait: bool) -> None:
    _emit(status.summary() if wait or status.state == "DRY_RUN" else {"bulk_id": status.bulk_id})
    if status.state == "UNKNOWN" or status.failed or (wait and not status.done):
        sys.exit(EXIT_JOB_NOT_OK)


@bulk.command("submit")
@click.argument("file")
@click.option("--wait", is_flag=True, help="Show progress on stderr and print a summary.")
@click.option("--dry-run", is_flag=True, help="Check every row and count what would be sent.")
@click.option("--only-changed", is_flag=True, help="Skip accounts already in the target state.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["auto", "csv", "jsonl"]),
    default="auto",
    show_default=True,
    help="Input format; auto looks at the extension, then the first line.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=24 * 3600.0,
    help="Seconds to wait with --wait.",
)
@click.option("--idempotency-key", help="Submitting again with this key queues nothing new.")
def bulk_submit(
    file: str,
    wait: bool,
    dry_run: bool,
    only_changed: bool,
    fmt: str,
    timeout: float,
    idempotency_key: str | None,
) -> None:
    """Queue the rows of FILE (header account,send,email; .jsonl for JSON Lines; - for stdin)."""
    from .bulk import bulk_status, submit_bulk
    from .rows import open_input, read_rows

    with open_input(file) as fh:
        bulk_id = submit_bulk(
            read_rows(fh, fmt, file),
            dry_run=dry_run,
            only_changed=only_changed,
            idempotency_key=idempotency_key,
        )
    status = bulk_status(bulk_id)
    if dry_run:
        from .bulk import bulk_failures

        for failure in itertools.islice(bulk_failures(bulk_id), 20):
            click.echo(f"line {failure['line']}: {failure['reason']}", err=True)
        _finish(status, wait=True)
        return
    if wait:
        status = _follow(bulk_id, timeout)
    _finish(status, wait)


@bulk.command("status")
@click.argument("bulk_id")
def bulk_status_cmd(bulk_id: str) -> None:
    """The progress of a bulk: counts, start and finish times, current rate."""
    from .bulk import bulk_status

    status = bulk_status(bulk_id)
    _emit(status.as_dict())
    if status.state == "UNKNOWN":
        sys.exit(EXIT_JOB_NOT_OK)


@bulk.command("failures")
@click.argument("bulk_id")
def bulk_failures_cmd(bulk_id: str) -> None:
    """The failed rows as CSV (account,send,email,line,reason), ready to fix and resubmit."""
    from .bulk import bulk_failures, bulk_status

    if bulk_status(bulk_id).state == "UNKNOWN":
        _fail(f"no bulk {bulk_id} (never submitted, or expired)")
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(["account", "send", "email", "line", "reason"])
    for failure in bulk_failures(bulk_id):
        send = failure.get("send")
        writer.writerow(
            [
                failure.get("account") or "",
                str(send).lower() if isinstance(send, bool) else (send or ""),
                failure.get("email") or "",
                failure.get("line"),
                failure.get("reason"),
            ]
        )


@bulk.command("retry")
@click.argument("bulk_id")
@click.option("--wait", is_flag=True, help="Show progress on stderr and print a summary.")
@click.option("--timeout", type=click.FloatRange(min=0), default=24 * 3600.0)
def bulk_retry(bulk_id: str, wait: bool, timeout: float) -> None:
    """Submit the failed rows of BULK_ID again, as a new bulk."""
    from .bulk import bulk_status, retry_bulk

    if bulk_status(bulk_id).state == "UNKNOWN":
        _fail(f"no bulk {bulk_id} (never submitted, or expired)")
    new_id = retry_bulk(bulk_id)
    status = _follow(new_id, timeout) if wait else bulk_status(new_id)
    _finish(status, wait)


@cli.group()
def dead() -> None:
    """Jobs that failed for good: list them, send them again."""


@dead.command("list")
def dead_list() -> None:
    """One JSON object per dead job, oldest first: id, task, args, error, failed_at."""
    from .producer import dead_letters

    for letter in dead_letters():
        _emit(letter.as_dict())


@dead.command("retry")
@click.argument("job_id", required=False)
@click.option("--all", "everything", is_flag=True, help="Re-drive every dead job.")
def dead_retry(job_id: str | None, everything: bool) -> None:
    """Send JOB_ID (or --all) again under a new id; prints {"id": old, "new_id": new}."""
    from .producer import dead_letters, redrive

    if bool(job_id) == everything:
        raise click.UsageError("give one JOB_ID or --all")
    ids = [letter.id for letter in dead_letters()] if everything else [str(job_id)]
    for old in ids:
        _emit({"id": old, "new_id": redrive(old)})


@cli.command()
@click.option(
    "--node", help="Ping only this worker (e.g. celery@$HOSTNAME), for a container check."
)
@click.option("--api", "with_api", is_flag=True, help="Also check that the Plusofon API answers.")
def health(node: str | None, with_api: bool) -> None:
    """Check Redis, a live worker, the credential store's key and, with --api, the API."""
    from worker.settings import get_settings

    from .health import run_checks

    checks = run_checks(get_settings(), node=node, api=with_api)
    for check in checks:
        click.echo(check.line())
    if not all(check.ok for check in checks):
        sys.exit(EXIT_JOB_NOT_OK)


@cli.command()
@click.option("--port", type=click.IntRange(1, 65535), default=9808, show_default=True)
@click.option("--host", default="0.0.0.0", show_default=True)
def metrics(port: int, host: str) -> None:
    """Serve Prometheus metrics (queues, bulks, API latency and errors, rate limit, breaker)."""
    from .metrics import serve

    serve(port, host)


@cli.command()
@click.option("--keep-logs", is_flag=True, help="Keep the demo's log directory.")
def demo(keep_logs: bool) -> None:
    """Run the whole pipeline locally: Redis, simulator, a worker, and some jobs."""
    from .demo import run_demo

    sys.exit(run_demo(keep_logs=keep_logs))


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8080, show_default=True)
@click.option("--latency-ms", type=float, default=0.0, show_default=True)
@click.option("--generate", type=int, default=0, help="Create N accounts acct-NNNNNN.")
def simulator(host: str, port: int, latency_ms: float, generate: int) -> None:
    """Run the Plusofon API simulator (for local runs and tests; never production)."""
    from simulator.server import run

    run(host, port, latency_ms=latency_ms, generate=generate)


def main() -> None:
    try:
        cli.main(standalone_mode=True)
    except VoicemailError as exc:
        _fail(str(exc))

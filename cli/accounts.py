"""`voicemail accounts`: the encrypted credential store."""

from __future__ import annotations

import contextlib
import csv
import io
import sqlite3
import sys
from collections.abc import Iterator
from typing import IO

import click

from worker.core.errors import VoicemailError
from worker.core.validation import check_account, check_token
from worker.store.credentials import AccountRow

from .common import EXIT_JOB_NOT_OK, EXIT_NOT_OK, emit, fail


@click.group()
def accounts() -> None:
    """Manage the encrypted credential store."""


def _open_text(path: str) -> IO[str]:
    if path == "-":
        return io.TextIOWrapper(sys.stdin.buffer, encoding="utf-8-sig", newline="")
    try:
        return open(path, encoding="utf-8-sig", newline="")
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")


class _Seen:
    """The account names met so far in one import, with their lines, in a private temporary
    SQLite database: memory stays flat however long the file (a dict of a million names
    held about 180 MB), at about 4 us a row."""

    def __init__(self) -> None:
        self._db = sqlite3.connect("")  # "": a temporary database on disk, gone on close
        self._db.execute("CREATE TABLE seen (name TEXT PRIMARY KEY, line INTEGER) WITHOUT ROWID")

    def first_line(self, name: str, line: int) -> int | None:
        """Remember `name` at `line`; the line it was first given on, if it was."""
        try:
            self._db.execute("INSERT INTO seen VALUES (?, ?)", (name, line))
        except sqlite3.IntegrityError:
            (first,) = self._db.execute("SELECT line FROM seen WHERE name = ?", (name,)).fetchone()
            return int(first)
        return None

    def close(self) -> None:
        self._db.close()


def read_account_rows(fh: IO[str], errors: list[str]) -> Iterator[AccountRow]:
    """Yield good rows of an `account,token[,client]` CSV; bad ones go to `errors`."""
    reader = csv.DictReader(fh)
    header = [h.strip() for h in reader.fieldnames or []]
    missing = {"account", "token"} - set(header)
    if missing:
        raise VoicemailError(
            f"the CSV header must name account,token (optional client); missing {sorted(missing)}"
        )
    reader.fieldnames = header
    with contextlib.closing(_Seen()) as seen:
        for row in reader:
            # A quoted field may span lines: name the line where the record starts.
            line = reader.line_num - sum(str(v).count("\n") for v in row.values() if v)
            try:
                name = check_account((row.get("account") or "").strip())
                token = check_token(row.get("token") or "")
                client_text = (row.get("client") or "").strip()
                if client_text and not client_text.isdigit():
                    raise VoicemailError(f"client must be a number, got {client_text[:20]!r}")
                if (first := seen.first_line(name, line)) is not None:
                    raise VoicemailError(f"account {name!r} already given on line {first}")
            except VoicemailError as exc:
                errors.append(f"line {line}: {exc}")
                continue
            yield AccountRow(name, token, int(client_text) if client_text else None)


@accounts.command("import")
@click.argument("file")
def accounts_import(file: str) -> None:
    """Import accounts from a CSV FILE with header account,token[,client] (- for stdin)."""
    from tasks.producer import credential_store
    from worker.core.settings import get_settings

    if get_settings().secret_key is None:
        fail("VOICEMAIL_SECRET_KEY is not set: tokens are stored encrypted with it")
    errors: list[str] = []
    with _open_text(file) as fh:
        count = credential_store().put_many(read_account_rows(fh, errors))
    for error in errors:
        click.echo(f"voicemail: {file}: {error}", err=True)
    emit({"imported": count, "refused": len(errors)})
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
    from tasks.producer import credential_store
    from worker.core.settings import get_settings

    settings = get_settings()
    if settings.secret_key is None:
        fail("VOICEMAIL_SECRET_KEY is not set: it is the new key to seal tokens with")
    if not settings.old_secret_keys():
        fail("VOICEMAIL_OLD_SECRET_KEYS is not set: it holds the key(s) tokens are sealed with now")
    emit({"rotated": credential_store().rotate_key()})


@accounts.command("list")
def accounts_list() -> None:
    """List account names (never tokens)."""
    from tasks.producer import credential_store

    for name in credential_store().names():
        click.echo(name)


@accounts.command("remove")
@click.argument("name")
def accounts_remove(name: str) -> None:
    """Remove account NAME from the store."""
    from tasks.producer import credential_store

    if not credential_store().remove(name):
        fail(f"account {name!r} is not in the credential store", EXIT_NOT_OK)
    click.echo(f"removed {name}", err=True)

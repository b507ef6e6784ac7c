"""Checks on job input, shared by the producer (before queueing) and the worker
(for messages sent by name from services that skipped the producer)."""

from __future__ import annotations

import re
import unicodedata
from typing import Any

import email_validator

from .errors import InputError

MAX_ACCOUNT_LENGTH = 200
MAX_EMAIL_LENGTH = 254
MAX_TOKEN_LENGTH = 4096
# An API token goes into an HTTP header: printable ASCII, no spaces. Anything else would
# be refused by the transport, whose error quotes the whole header, token included.
_TOKEN = re.compile(r"[!-~]+")


def check_account(account: Any) -> str:
    if not isinstance(account, str):
        raise InputError(f"account must be a string, got {type(account).__name__}")
    if not account or account != account.strip():
        raise InputError("account must be a non-empty name without surrounding spaces")
    if len(account) > MAX_ACCOUNT_LENGTH:
        raise InputError(f"account name is longer than {MAX_ACCOUNT_LENGTH} characters")
    if any(unicodedata.category(ch).startswith(("C", "Z")) and ch != " " for ch in account):
        raise InputError(f"account {account[:40]!r} contains control or separator characters")
    return account


def check_send(send: Any) -> bool:
    # Strictly a boolean: "false" or 0 from a careless sender must not turn sending on or off.
    if not isinstance(send, bool):
        raise InputError(f"send must be true or false, got {type(send).__name__} {send!r:.40}")
    return send


def parse_send(value: Any) -> bool:
    """`send` from a file or a mapping: a boolean, or the text true/false (any case)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise InputError(f"send must be true or false, got {value!r:.40}")


def check_email(email: Any) -> str:
    if not isinstance(email, str):
        raise InputError(f"email must be a string, got {type(email).__name__}")
    if len(email) > MAX_EMAIL_LENGTH:
        raise InputError(f"email is longer than {MAX_EMAIL_LENGTH} characters")
    try:
        email_validator.validate_email(email, check_deliverability=False)
    except email_validator.EmailNotValidError as exc:
        raise InputError(f"email {email!r:.80} is not valid: {exc}") from None
    return email


def check_update(account: Any, send: Any, email: Any) -> tuple[str, bool, str]:
    return check_account(account), check_send(send), check_email(email)


def check_token(token: Any) -> str:
    """The token, stripped of surrounding white space (a trailing newline from a file or
    an environment variable); the error never quotes it."""
    if not isinstance(token, str):
        raise InputError(f"token must be a string, got {type(token).__name__}")
    text: str = token.strip()
    if not text:
        raise InputError("token is empty")
    if len(text) > MAX_TOKEN_LENGTH:
        raise InputError(f"token is longer than {MAX_TOKEN_LENGTH} characters")
    if not _TOKEN.fullmatch(text):
        bad = next(ch for ch in text if not _TOKEN.fullmatch(ch))
        raise InputError(
            f"token holds a character an HTTP header cannot carry (U+{ord(bad):04X}): "
            "only printable ASCII without spaces"
        )
    return text


MAX_ACTOR_LENGTH = 200
MAX_REASON_LENGTH = 1000
SELF_ACTOR = "voicemail"  # what the project does by itself: a correction, a fix, a timed revert


def default_actor() -> str:
    """`$USER@host` of this process: who changed it, when the caller does not say."""
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a bare container)
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


def _journal_text(value: Any, what: str, longest: int) -> str:
    if not isinstance(value, str):
        raise InputError(f"{what} must be a string, got {type(value).__name__}")
    text = value.strip()
    if len(text) > longest:
        raise InputError(f"{what} is longer than {longest} characters")
    if any(unicodedata.category(ch) == "Cc" for ch in text):
        raise InputError(f"{what} {text[:40]!r} contains control characters")
    return text


def check_actor(actor: Any) -> str:
    """Who asked for a change, as the journal records it; None is "" (a sender by name
    that did not say)."""
    return "" if actor is None else _journal_text(actor, "actor", MAX_ACTOR_LENGTH)


def check_reason(reason: Any) -> str:
    """Why, as the journal records it; None is ""."""
    return "" if reason is None else _journal_text(reason, "reason", MAX_REASON_LENGTH)

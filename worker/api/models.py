"""What a request acts on and what the API answers: credentials and voicemail settings."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import ApiError


@dataclass(frozen=True)
class Credentials:
    """What a request needs to act for one account. The token never shows in a repr."""

    account: str
    token: str = field(repr=False)
    client_id: int | None = None


@dataclass(frozen=True)
class VoicemailSettings:
    """An account's voicemail settings as the API holds them (not this project's configuration)."""

    email: str
    send: bool

    def as_result(self, account: str) -> dict[str, Any]:
        return {"account": account, "email": self.email, "send": self.send}


def patch_body(send: bool, email: str) -> dict[str, Any]:
    return {"send": send, "email": email}


def parse_settings(body: Mapping[str, Any] | None) -> VoicemailSettings:
    email, send = (body or {}).get("email"), (body or {}).get("send")
    if not isinstance(email, str) or not isinstance(send, bool):
        raise ApiError('unexpected GET answer: expected {"email": str, "send": bool}')
    return VoicemailSettings(email=email, send=send)

from __future__ import annotations

from typing import Any

import pytest

from worker.core.errors import InputError
from worker.core.validation import check_account, check_email, check_send


@pytest.mark.parametrize("good", ["acme", "client-42", "ООО Ромашка", "a" * 200])
def test_good_accounts(good: str) -> None:
    assert check_account(good) == good


@pytest.mark.parametrize("bad", ["", " acme", "acme\n", "a\x00b", "a" * 201, 5, None, b"acme"])
def test_bad_accounts(bad: Any) -> None:
    with pytest.raises(InputError):
        check_account(bad)


@pytest.mark.parametrize("good", [True, False])
def test_send_is_strictly_boolean(good: bool) -> None:
    assert check_send(good) is good


@pytest.mark.parametrize("bad", ["true", "false", 1, 0, None, "yes"])
def test_send_rejects_lookalikes(bad: Any) -> None:
    with pytest.raises(InputError, match="send must be true or false"):
        check_send(bad)


@pytest.mark.parametrize("good", ["vm@acme.ru", "a.b+c@example.co.uk", "я@почта.рф"])
def test_good_emails(good: str) -> None:
    assert check_email(good) == good


@pytest.mark.parametrize(
    "bad", ["", "nope", "a@@b.ru", "a b@c.ru", "x@localhost", "a@" + "b" * 300 + ".ru", 7]
)
def test_bad_emails(bad: Any) -> None:
    with pytest.raises(InputError, match="email"):
        check_email(bad)

"""The simulator's `/_sim/` control endpoints, for tests, benchmarks and the demo."""

from __future__ import annotations

from typing import Any

import httpx


class SimulatorControl:
    """The simulator's `/_sim/` control endpoints."""

    def __init__(self, url: str) -> None:
        self._http = httpx.Client(base_url=url, timeout=10)

    def close(self) -> None:
        self._http.close()

    def add_accounts(self, rows: list[dict[str, Any]]) -> None:
        self._http.post("/_sim/accounts", json=rows).raise_for_status()

    def script(self, account: str, responses: list[str]) -> None:
        self._http.post(
            "/_sim/script", json={"account": account, "responses": responses}
        ).raise_for_status()

    def faults(self, **faults: Any) -> None:
        self._http.post("/_sim/faults", json=faults).raise_for_status()

    def account(self, name: str) -> dict[str, Any]:
        response = self._http.get(f"/_sim/accounts/{name}")
        response.raise_for_status()
        return dict(response.json())

    def set_values(self, name: str, **values: Any) -> dict[str, Any]:
        """Set `send` and/or `email` of account `name` directly, as someone else would:
        no request and no PATCH is counted."""
        response = self._http.post(f"/_sim/accounts/{name}/values", json=values)
        response.raise_for_status()
        return dict(response.json())

    def requests(self, account: str) -> int:
        """Requests seen for `account`; an unknown token is counted as "<unauthenticated>"."""
        counts = self.stats()["requests"]
        return int(counts.get(account, counts.get("<unauthenticated>", 0)))

    def stats(self) -> dict[str, Any]:
        return dict(self._http.get("/_sim/stats").json())

    def reset(self) -> None:
        self._http.post("/_sim/reset").raise_for_status()

    def late_landings(self) -> list[dict[str, Any]]:
        """PATCHes the simulator applied after answering them ambiguously, oldest first."""
        return list(self._http.get("/_sim/late").json())

"""Flower in headless Chromium, as an operator sees it: log in, find the finished update.

Needs Debian's `chromium` and `chromium-driver` (.ci/run installs them); skips with the
reason where they are missing. Leaves a screenshot in artifacts/flower-tasks.png.
"""

from __future__ import annotations

import base64
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from simulator import stack
from tasks import enqueue_update, wait

from .conftest import SimAccount

pytestmark = pytest.mark.integration
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"


def test_flower_shows_the_finished_update(
    flower: stack.Service, make_account: Callable[..., SimAccount], tmp_path: Path
) -> None:
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and chromedriver):
        pytest.skip("no Chromium here: apt-get install chromium chromium-driver (.ci/run does)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    account = make_account()
    job = enqueue_update(account.name, True, "browser@acme.ru")
    assert wait(job, timeout=20).ok

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,900",
        f"--user-data-dir={tmp_path / 'chromium'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    try:
        # Log in with basic auth, as the browser's dialog would, for every request of the page.
        credentials = base64.b64encode(flower.extra["auth"].encode()).decode()
        driver.execute_cdp_cmd("Network.enable", {})
        driver.execute_cdp_cmd(
            "Network.setExtraHTTPHeaders", {"headers": {"Authorization": f"Basic {credentials}"}}
        )
        deadline = time.monotonic() + 60
        while True:
            driver.get(f"{flower.url}/tasks")
            page = ""
            for _ in range(20):  # the table is filled by the page's own requests
                page = driver.page_source
                if job in page and "SUCCESS" in page:
                    break
                time.sleep(0.25)
            if job in page and "SUCCESS" in page:
                break
            assert time.monotonic() < deadline, "Flower's tasks page never showed the job"
        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "flower-tasks.png"
        driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        assert "voicemail.update" in page
        assert account.token not in page
        # The task's own page shows its arguments: account names, never tokens.
        driver.get(f"{flower.url}/task/{job}")
        detail = driver.page_source
        driver.save_screenshot(str(ARTIFACTS / "flower-task.png"))
        assert account.name in detail
        assert account.token not in detail
    finally:
        driver.quit()

"""The operator console in a real headless Chromium against a real gateway (``distillguard
serve`` on 127.0.0.1) fed by the simulator (simulate, ingest, scan): log in, navigate, filter,
block an account and revoke a passport, and see both refused through the API.

Skipped where /usr/bin/chromium or /usr/bin/chromedriver is absent.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from distillguard.config import Settings
from distillguard.gateway.agents import AgentFactory
from distillguard.gateway.testing import ADMIN_TOKEN, chat_body
from distillguard.keyring import Keyring

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"

pytestmark = pytest.mark.skipif(
    not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
    reason="headless Chromium is not installed (/usr/bin/chromium and /usr/bin/chromedriver; "
    "Debian: apt-get install chromium chromium-driver)",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cli(config: Path, *args: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "distillguard.cli.main", "--config", str(config), *args],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        timeout=300,
    )


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Simulated traffic ingested and scanned, and a gateway serving the console over it."""
    root = tmp_path_factory.mktemp("console-e2e")
    home = root / "home"
    home.mkdir()
    config = root / "distillguard.toml"
    config.write_text(
        f'home = "{home}"\n[gateway]\nadmin_token = "{ADMIN_TOKEN}"\n'
        f'[console]\nscan_results = "{root / "scan"}"\n',
        encoding="utf-8",
    )
    settings = Settings(home=home)
    Keyring.create(settings.keyring_path)
    _cli(config, "simulate", "--scenario", "tiny", "--out", str(root / "sim"), "--seed", "3")
    _cli(config, "ingest", str(root / "sim"))
    _cli(config, "scan", str(root / "sim"), "--out", str(root / "scan"))
    campaigns = orjson.loads((root / "scan" / "campaigns.json").read_bytes())
    assert campaigns, "the tiny scenario's campaign was not found by the scan"
    campaign = campaigns[0]
    target = sorted(campaign["accounts"])[0]
    agent = AgentFactory.from_settings(settings).issue(target)
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "distillguard.cli.main", "--config", str(config), "serve",
         "--port", str(port), "--log-level", "WARNING"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                err = proc.stderr.read().decode() if proc.stderr else ""
                raise RuntimeError(f"serve exited: {err[-2000:]}")
            try:
                if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("serve did not become ready")
            time.sleep(0.3)
        yield {"url": url, "campaign": campaign, "account": target, "agent": agent}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def driver() -> Iterator[Any]:
    """A fresh headless Chromium."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    profile = tempfile.mkdtemp(prefix="dg-chromium-")
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={profile}", "--window-size=1280,1600",
    ):  # fmt: skip
        options.add_argument(flag)
    drv = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    drv.implicitly_wait(5)
    try:
        yield drv
    finally:
        drv.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _shot(driver: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"console-{name}-{os.getpid()}.png"
    assert driver.save_screenshot(str(path)) and path.stat().st_size > 5_000


def _chat(served: dict[str, Any]) -> httpx.Response:
    with httpx.Client(base_url=served["url"], auth=served["agent"].auth(), timeout=30) as c:
        return c.post("/v1/chat/completions", json=chat_body("hello"))


def test_login_navigate_filter_block_and_revoke(served: dict[str, Any], driver: Any) -> None:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select, WebDriverWait

    account = served["account"]
    campaign_id = served["campaign"]["campaign_id"]
    assert _chat(served).status_code == 200  # the agent is served before any action

    driver.get(served["url"] + "/console/")
    assert "/console/login" in driver.current_url
    # keyboard: the first Tab reaches the skip link, which is visible when focused
    driver.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)
    active = driver.switch_to.active_element
    assert active.get_attribute("class") == "skip" and active.is_displayed()
    driver.find_element(By.ID, "analyst").send_keys("ana")
    driver.find_element(By.ID, "token").send_keys(ADMIN_TOKEN + Keys.ENTER)
    WebDriverWait(driver, 10).until(lambda d: "Traffic overview" in d.page_source)
    assert driver.find_element(By.CSS_SELECTOR, "#live svg.chart").is_displayed()
    _shot(driver, "overview")

    driver.find_element(By.LINK_TEXT, "Campaigns").click()
    driver.find_element(By.LINK_TEXT, campaign_id).click()
    assert driver.find_element(By.CSS_SELECTOR, "svg.graph").is_displayed()
    _shot(driver, "campaign")
    search = driver.find_element(By.ID, "f-q")
    search.send_keys(account + Keys.ENTER)  # htmx swaps the table in place
    wait = WebDriverWait(driver, 20, ignored_exceptions=(StaleElementReferenceException,))
    wait.until(lambda d: "1 matching" in d.find_element(By.ID, "accounts").text)

    def open_account(d: Any) -> bool:
        d.find_element(By.CSS_SELECTOR, f"#accounts a[href$='/accounts/{account}']").click()
        return True

    wait.until(open_account)
    WebDriverWait(driver, 20).until(lambda d: f"Account {account}" in d.page_source)

    Select(driver.find_element(By.ID, "act")).select_by_value("block")
    driver.find_element(By.ID, "reason").send_keys("hydra cluster, e2e")
    driver.find_element(By.XPATH, "//button[text()='Review action']").click()
    WebDriverWait(driver, 20).until(lambda d: "You are about to" in d.page_source)
    driver.find_element(By.ID, "confirm").click()
    WebDriverWait(driver, 10).until(lambda d: "block" in d.find_element(By.ID, "action-now").text)
    _shot(driver, "account-blocked")
    refused = _chat(served)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "account_blocked"

    driver.find_element(By.CSS_SELECTOR, "input[id^='rv-']").send_keys("key leaked")
    driver.find_element(By.XPATH, "//button[text()='Revoke…']").click()
    driver.find_element(By.ID, "confirm").click()
    WebDriverWait(driver, 10).until(lambda d: "revoked: ana: key leaked" in d.page_source)
    refused = _chat(served)
    # verification (and so revocation) comes before the policy's block
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "revoked_passport"

    driver.find_element(By.LINK_TEXT, "Audit trail").click()
    text = driver.find_element(By.TAG_NAME, "main").text
    assert "hydra cluster, e2e" in text and "revoke_passport" in text and "ana" in text

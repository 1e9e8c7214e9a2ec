"""The status page in a real browser: headless Chromium against real gunicorn with 2 workers,
Redis, and traffic through the fake upstream with 503 faults and fallbacks.

Chromium and its driver are Debian's (``apt-get install chromium chromium-driver``; .ci/run
installs them). Without them the test fails: it is never skipped. Screenshots are kept in
``test-artifacts/`` (ignored by git).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

from tests.conftest import ALICE_KEY, BOB_KEY, base_config
from tests.fakes.gateway import ROOT, GatewayProcess
from tests.fakes.upstream import FakeUpstream, Fault

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = ROOT / "test-artifacts"
FAIL_MAX = 3


def config(fake: FakeUpstream) -> dict[str, Any]:
    cfg = base_config(fake)
    cfg["cache"] = {"responses": "deterministic"}
    cfg["auth"]["keys"][0]["admin"] = True  # alice
    cfg["auth"]["keys"][1]["limits"] = ["100/minute"]  # bob
    main, backup = dict(cfg["providers"][0]), dict(cfg["providers"][0])
    main["breaker"] = {"fail_max": FAIL_MAX, "reset_timeout": 120}
    backup.update(name="backup", priority=2)
    cfg["providers"] = [main, backup]
    cfg["status"] = {"refresh": 120}  # no reload while the test reads the page
    return cfg


def chat(gw: GatewayProcess, text: str, key: str = BOB_KEY) -> requests.Response:
    # A new connection each time (no Session), so requests spread over both workers.
    return requests.post(
        f"{gw.url}/v1/chat/completions",
        json={
            "model": "gpt-4o-mini",
            "messages": [{"role": "user", "content": text}],
            "temperature": 0,
        },
        headers={"Authorization": f"Bearer {key}"},
        timeout=15,
    )


@pytest.fixture
def browser() -> Iterator[WebDriver]:
    assert CHROMIUM.exists() and CHROMEDRIVER.exists(), (
        "the status page test needs Debian's chromium and chromium-driver: "
        "apt-get install -y chromium chromium-driver"
    )
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(arg)
    options.add_argument("--window-size=1280,1000")
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def screenshot(driver: WebDriver, name: str, width: int, height: int, mobile: bool) -> Path:
    """Render at ``width`` (the whole page's height) and save a PNG in test-artifacts/."""
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {
            "width": width,
            "height": height,
            "deviceScaleFactor": 2 if mobile else 1,
            "mobile": mobile,
        },
    )
    full = driver.execute_script("return document.documentElement.scrollHeight")
    driver.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride",
        {
            "width": width,
            "height": max(height, full),
            "deviceScaleFactor": 2 if mobile else 1,
            "mobile": mobile,
        },
    )
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    assert driver.save_screenshot(str(path))
    print(f"screenshot: {path}")
    return path


def provider(driver: WebDriver, name: str) -> dict[str, Any]:
    card = driver.find_element(By.CSS_SELECTOR, f'article[data-provider="{name}"]')
    points = [p.get_attribute("points") or "" for p in card.find_elements(By.TAG_NAME, "polyline")]
    return {
        "breaker": card.find_element(By.CSS_SELECTOR, "[data-breaker]").text,
        "calls": int(card.find_element(By.CSS_SELECTOR, "[data-calls]").text),
        "errors": int(
            card.find_element(By.CSS_SELECTOR, "[data-errors]").get_attribute("data-errors") or -1
        ),
        "fallbacks": int(card.find_element(By.CSS_SELECTOR, "[data-fallbacks]").text),
        "points": points,
    }


def click_through(driver: WebDriver, selector: str) -> None:
    """Click ``selector`` and wait until the page it leads to has replaced this one."""
    page = driver.find_element(By.TAG_NAME, "html")
    driver.find_element(By.CSS_SELECTOR, selector).click()
    # Mid-navigation, chromedriver may answer "Node with given id does not belong to the
    # document" instead of "stale element": the next poll then sees the page gone.
    WebDriverWait(driver, 15, ignored_exceptions=(WebDriverException,)).until(
        expected_conditions.staleness_of(page)
    )


def submit(driver: WebDriver, key: str) -> None:
    """Type ``key`` into the sign-in form, send it, and wait for the next page."""
    driver.find_element(By.ID, "key").send_keys(key)
    click_through(driver, "#signin button")


def until(check: Callable[[], bool], driver: WebDriver, timeout: float = 15) -> None:
    """Reload the page until ``check`` holds (other workers share figures every 2 s)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "the status page never showed the traffic sent"
        time.sleep(0.5)
        driver.refresh()


def test_status_page_in_a_real_browser(
    fake: FakeUpstream,
    launch: Callable[..., GatewayProcess],
    redis_url: str,
    browser: WebDriver,
) -> None:
    gw = launch(config(fake), env={"REDIS_URL": redis_url}, workers=2)
    # Traffic: 6 answered by the main provider (cache misses), 4 cache hits of one of them,
    # then FAIL_MAX answers where the main provider fails with 503 and the backup answers,
    # which opens the main provider's (shared) circuit.
    for i in range(6):
        resp = chat(gw, f"question {i}")
        assert resp.status_code == 200 and resp.headers["X-ProxyAPI-Provider"] == "fake"
    for _ in range(4):
        assert chat(gw, "question 0").headers["X-Cache"] == "HIT"
    for i in range(FAIL_MAX):
        fake.script(Fault(status=503))
        resp = chat(gw, f"fallback {i}")
        assert resp.status_code == 200 and resp.headers["X-ProxyAPI-Provider"] == "backup"
    # Every worker publishes its figures (a /v1/providers answer does) so both report.
    for _ in range(20):
        requests.get(
            f"{gw.url}/v1/providers", headers={"Authorization": f"Bearer {BOB_KEY}"}, timeout=5
        )

    # Not signed in: the browser gets the sign-in form.
    browser.get(f"{gw.url}/status")
    assert browser.find_elements(By.ID, "signin"), browser.page_source[:500]
    assert not browser.find_elements(By.ID, "viewer")
    # A wrong key: the form again, with the reason.
    submit(browser, "not-a-key")
    assert "Invalid API key" in browser.find_element(By.ID, "message").text
    # A non-admin key: refused.
    submit(browser, BOB_KEY)
    assert "not an admin key" in browser.find_element(By.ID, "message").text
    # The admin key: signed in, the key in the form's body, never in the URL.
    submit(browser, ALICE_KEY)
    assert browser.current_url == f"{gw.url}/status"
    assert browser.find_element(By.ID, "viewer").text == "alice"
    (cookie,) = browser.get_cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/status"
    assert ALICE_KEY not in cookie["value"]
    assert ALICE_KEY not in browser.page_source

    def shown() -> bool:
        main, backup = provider(browser, "fake"), provider(browser, "backup")
        workers = browser.find_element(By.ID, "workers-reporting").text
        spent = browser.find_elements(By.CSS_SELECTOR, 'tr[data-spend-key="bob"] [data-requests]')
        return (
            workers == "2"
            and (main["calls"], main["errors"], main["fallbacks"])
            == (6 + FAIL_MAX, FAIL_MAX, FAIL_MAX)
            and (backup["calls"], backup["errors"]) == (FAIL_MAX, 0)
            and bool(spent)
            and spent[0].text == str(6 + 4 + FAIL_MAX)
        )

    until(shown, browser)
    main, backup = provider(browser, "fake"), provider(browser, "backup")
    assert main["breaker"] == "open" and backup["breaker"] == "closed"
    for chart in main["points"]:
        pairs = chart.split()
        assert len(pairs) == 60  # one point a minute over the hour
        assert len({p.split(",")[1] for p in pairs}) > 1  # this minute's traffic stands out
    assert int(browser.find_element(By.ID, "cache-hits").text) == 4
    assert browser.find_element(By.ID, "cache-hit-rate").text.endswith("%")
    assert "circuit open" in browser.find_element(By.ID, "warnings").text
    assert browser.find_element(By.CSS_SELECTOR, '[data-check="redis"]').text == "ok"
    limits = browser.find_element(By.CSS_SELECTOR, 'tr[data-limit-key="bob"]').text
    assert "100" in limits
    # Nothing was fetched from anywhere but the gateway (the CSP forbids it anyway).
    sources = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)"
    )
    assert sources == []
    desktop = screenshot(browser, "status.png", 1280, 1000, mobile=False)
    assert desktop.stat().st_size > 10_000

    # A phone: nothing wider than the screen.
    phone = screenshot(browser, "status-mobile.png", 390, 844, mobile=True)
    assert phone.stat().st_size > 10_000
    wide = browser.execute_script(
        "return [document.documentElement.scrollWidth, window.innerWidth]"
    )
    assert wide[0] <= wide[1], wide

    # Signing out ends the session.
    click_through(browser, 'form[action="/status/session/end"] button')
    assert browser.find_elements(By.ID, "signin")
    assert browser.get_cookies() == []

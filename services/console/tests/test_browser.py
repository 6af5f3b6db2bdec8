"""The console in a real browser: Debian's headless Chromium driven by Selenium through Debian's
chromedriver (both given by path: nothing is downloaded). Pages must render with no error in the
browser's console (a CSP violation is one), the device table must say what Redis holds, a new
reading must appear without a reload, a stale device must be flagged, and a browser without the
password gets 401."""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from gateway_common.devices import DeviceEntry, is_stale
from gateway_common.streams import StreamKeys

from .conftest import Console, add_dead_letter, add_frames, add_readings, energy_record, register

pytestmark = [pytest.mark.integration, pytest.mark.system]

CHROMIUM = Path(os.environ.get("GATEWAY_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("GATEWAY_TEST_CHROMEDRIVER", "/usr/bin/chromedriver"))
FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
    "--no-first-run", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--window-size=1280,1000",
)  # fmt: skip
WAIT_S = 15

FRESH, QUIET, SILENT = "B5700009151DC", "B570000AAAA01", "B570000BBBB02"


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        assert path.exists(), f"{path} is missing: apt-get install {package} (.ci/run does)"
    os.environ["SE_OFFLINE"] = "true"  # selenium-manager, if ever asked, must not download
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.execute_cdp_cmd("Network.enable", {})
    yield driver
    driver.quit()


def login(browser: webdriver.Chrome, console: Console | None) -> None:
    """A blank page and no log left by an earlier test; then the console's credentials sent
    with every request of the browser (None: none)."""
    browser.get("about:blank")
    browser.get_log("browser")
    browser.get_log("performance")
    headers = {}
    if console is not None and console.auth is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(console.auth.encode()).decode()
    browser.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": headers})


def errors(browser: webdriver.Chrome) -> list[dict[str, object]]:
    return [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]


def wait_for(browser: webdriver.Chrome, condition, what: str) -> None:
    try:
        WebDriverWait(browser, WAIT_S, poll_frequency=0.1).until(lambda _d: condition())
    except TimeoutException:
        pytest.fail(f"not within {WAIT_S} s: {what}\n{browser.page_source[:3000]}")


def live_updates(browser: webdriver.Chrome) -> None:
    """Wait until the page's live parts have been fetched at least once."""
    status = browser.find_element(By.ID, "live-status")
    wait_for(browser, lambda: status.text.startswith("live ·"), "a live update")


def seed(client, keys: StreamKeys) -> float:
    now = time.time()
    register(client, keys, FRESH, last_seen=now - 20, link_budget=72, readings=40)
    register(
        client, keys, QUIET, last_seen=now - 300, link_budget=118, readings=12, interval_s=None
    )
    register(client, keys, SILENT, last_seen=now - 7200, link_budget=101, readings=3)
    # Three days ago: only the frames archive (7 days) still holds it, not the records (1 day).
    add_frames(client, keys, energy_record(FRESH, now - 3 * 86_400, energy_wh=(900, 2000, 3000)))
    add_readings(
        client,
        keys,
        *(
            energy_record(FRESH, now - 3600 + 600 * i, energy_wh=(1000 + i, 2000, 3000))
            for i in range(6)
        ),
        energy_record(QUIET, now - 300, valid=False),
        energy_record(SILENT, now - 7200),
    )
    add_dead_letter(client, keys, "unknown_file", bytes.fromhex("deadbeef"))
    return now


def test_pages_render_without_errors_in_the_browser(
    browser, start_console, redis_client, stream_prefix
) -> None:
    seed(redis_client, StreamKeys(stream_prefix))
    console = start_console()
    login(browser, console)
    for path, marker in (
        ("/", "card-modem"),
        ("/devices", "device-table"),
        (f"/devices/{FRESH}", "last-reading"),
        ("/dead", "dead-table"),
    ):
        browser.get(console.url + path)
        assert browser.find_elements(By.ID, marker), path
        live_updates(browser)
        assert errors(browser) == [], path
    browser.get(console.url + f"/devices/{FRESH}")
    wait_for(
        browser,
        lambda: len(browser.find_elements(By.CSS_SELECTOR, "#plots svg path.line")) >= 7,
        "plots",
    )
    captions = [c.text for c in browser.find_elements(By.CSS_SELECTOR, "#plots figcaption")]
    assert [c.split(" ")[0] for c in captions] == ["Link", "Voltage", "Active"]
    plots = browser.find_element(By.ID, "plots").text
    assert "6 records over the last 24 h from the frames archive" in plots
    assert errors(browser) == []
    # the week the frames archive keeps, the reading of three days ago included
    windows = browser.find_element(By.CSS_SELECTOR, "p.windows").text
    assert windows.split(":")[1].split() == ["1", "h", "6", "h", "24", "h", "72", "h", "168", "h"]
    browser.find_element(By.LINK_TEXT, "168 h").click()
    wait_for(
        browser,
        lambda: "7 records over the last 168 h" in browser.find_element(By.ID, "plots").text,
        "the week's plots",
    )
    assert len(browser.find_elements(By.CSS_SELECTOR, "#plots svg path.line")) >= 7
    assert errors(browser) == []
    assert "deadbeef".upper() not in browser.page_source  # raw bytes are shown spaced, lower case
    browser.get(console.url + "/dead")
    assert "de ad be ef" in browser.find_element(By.ID, "dead-table").text


def test_the_device_table_matches_redis(
    browser, start_console, redis_client, stream_prefix
) -> None:
    keys = StreamKeys(stream_prefix)
    seed(redis_client, keys)
    console = start_console()
    login(browser, console)
    browser.get(console.url + "/devices")
    live_updates(browser)
    registry = {
        k.decode(): DeviceEntry.from_bytes(v) for k, v in redis_client.hgetall(keys.devices).items()
    }
    seconds, micros = redis_client.time()
    now = seconds + micros / 1e6
    rows = browser.find_elements(By.CSS_SELECTOR, "#device-table tbody tr")
    shown = {}
    for row in rows:
        cells = row.find_elements(By.TAG_NAME, "td")
        shown[row.get_attribute("data-device")] = (cells[2].text, cells[3].text, cells[6].text)
    assert set(shown) == set(registry)
    for device_id, entry in registry.items():
        state, link_budget, _readings_24h = shown[device_id]
        assert state == ("STALE" if is_stale(entry, now) else "ok"), device_id
        assert link_budget.endswith(f"{entry.last_link_budget} dB"), device_id
    assert shown[FRESH][2] == "6"
    assert "not valid" in browser.find_element(By.CSS_SELECTOR, f'tr[data-device="{QUIET}"]').text
    # sorting by link budget, from the header link
    browser.find_element(By.LINK_TEXT, "link budget").click()
    wait_for(browser, lambda: "sort=link_budget" in browser.current_url, "sorted")
    order = [
        r.get_attribute("data-device")
        for r in browser.find_elements(By.CSS_SELECTOR, "#device-table tbody tr")
    ]
    assert order == sorted(registry, key=lambda d: registry[d].last_link_budget)
    # the search box filters as one types, without a reload
    browser.execute_script("window.notReloaded = true")
    browser.find_element(By.ID, "q").send_keys("aaaa")

    def visible() -> list[str | None]:
        rows = browser.find_elements(By.CSS_SELECTOR, "#device-table tbody tr")
        return [r.get_attribute("data-device") for r in rows if r.is_displayed()]

    wait_for(browser, lambda: visible() == [QUIET], "the search to filter the rows")
    live_updates(browser)
    wait_for(browser, lambda: visible() == [QUIET], "the filter to survive a live update")
    assert browser.execute_script("return window.notReloaded") is True
    assert errors(browser) == []


def test_a_new_reading_appears_without_a_reload(
    browser, start_console, redis_client, stream_prefix
) -> None:
    keys = StreamKeys(stream_prefix)
    now = seed(redis_client, keys)
    console = start_console()
    login(browser, console)
    browser.get(console.url + f"/devices/{FRESH}")
    live_updates(browser)
    browser.execute_script("window.notReloaded = true")
    table = lambda: browser.find_element(By.ID, "last-reading").text  # noqa: E731
    assert "247" not in table()
    register(redis_client, keys, FRESH, last_seen=now + 1, link_budget=66, readings=41)
    add_readings(
        redis_client, keys, energy_record(FRESH, now + 1, voltage=(247, 246, 245), link_budget=66)
    )
    wait_for(
        browser, lambda: "247" in table() and "246" in table(), "the new reading on the device page"
    )
    assert "66 dB" in browser.find_element(By.ID, "latest").text
    assert browser.execute_script("return window.notReloaded") is True
    browser.get(console.url + "/devices")
    browser.execute_script("window.notReloaded = true")
    row = lambda: browser.find_element(By.CSS_SELECTOR, f'tr[data-device="{FRESH}"]').text  # noqa: E731
    add_readings(redis_client, keys, energy_record(FRESH, now + 2, voltage=(239, 238, 237)))
    wait_for(browser, lambda: "239 / 238 / 237 V" in row(), "the new reading in the device table")
    assert browser.execute_script("return window.notReloaded") is True
    assert errors(browser) == []


def test_a_stale_device_is_flagged(browser, start_console, redis_client, stream_prefix) -> None:
    keys = StreamKeys(stream_prefix)
    now = seed(redis_client, keys)
    console = start_console()
    login(browser, console)
    browser.get(console.url + "/")
    stale = browser.find_element(By.ID, "stale-devices")
    assert SILENT in stale.text
    assert FRESH not in stale.text
    assert "1 stale" in browser.find_element(By.ID, "card-devices").text
    browser.get(console.url + "/devices")
    row = browser.find_element(By.CSS_SELECTOR, f'tr[data-device="{SILENT}"]')
    assert "stale" in (row.get_attribute("class") or "").split()
    assert "STALE" in row.text
    # it recovers with its next reading, live
    register(redis_client, keys, SILENT, last_seen=now, link_budget=101, readings=4)
    wait_for(
        browser,
        lambda: (
            "STALE" not in browser.find_element(By.CSS_SELECTOR, f'tr[data-device="{SILENT}"]').text
        ),
        "the device to recover",
    )
    assert errors(browser) == []


def test_without_the_password_the_browser_gets_401(
    browser, start_console, redis_client, stream_prefix
) -> None:
    seed(redis_client, StreamKeys(stream_prefix))
    console = start_console()
    login(browser, None)
    browser.get(console.url + "/devices")
    statuses = [
        event["params"]["response"]["status"]
        for event in (
            json.loads(entry["message"])["message"] for entry in browser.get_log("performance")
        )
        if event["method"] == "Network.responseReceived"
        and event["params"]["response"]["url"] == console.url + "/devices"
    ]
    assert statuses == [401]
    assert FRESH not in browser.page_source

#!/usr/bin/env python3
"""The dashboard in a real browser (headless Chromium through Selenium and chromium-driver),
against a running stack (deploy/local/stack.sh up): what a person would see.

  dashboard_browser.py LB_URL INSTANCE_URL STACK_SH SCREENSHOT

LB_URL is HAProxy (the load goes there), INSTANCE_URL the instance whose page is opened. With load
that gets one API key denied, the page must show a box per instance, every Redis node, non-zero
rates and that key (as its hash prefix) among the top limited; after `stack.sh stop-instance 2`,
the stopped instance's box must be gone within a few seconds. The screenshot is written to
SCREENSHOT. Prints "figure: ..." lines; exits 1 on a failed check."""
import hashlib
import os
import subprocess
import sys
import threading
import time
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

lb, instance, stack, screenshot = sys.argv[1:5]
KEY = "dashboard-test-key-%d" % time.time_ns()
# The access log's form (decide::loggable_identity): the header name, then 12 hex digits of the
# SHA-256 of the value.
SHOWN = "key:x-api-key:sha256=" + hashlib.sha256(KEY.encode()).hexdigest()[:12]
failures = []
stop = threading.Event()
# Sanitizer builds run several times slower (the test presets set FG_TEST_TIME_SCALE).
scale = int(os.environ.get("FG_TEST_TIME_SCALE", "1") or "1")


def load():
    """About 40 requests/s for the key (the stack's per-second policy allows 10): many denials."""
    while not stop.is_set():
        for _ in range(8):
            req = urllib.request.Request(lb + "/api/hello", headers={"X-API-Key": KEY})
            try:
                urllib.request.urlopen(req, timeout=2).read()
            except Exception:  # 429s raise HTTPError; the status is all we cause
                pass
        time.sleep(0.2)


def wait_until(what, check, seconds):
    """Polls `check` (a function returning a value or None) every 0.2 s for `seconds`."""
    seconds *= scale
    deadline = time.monotonic() + seconds
    started = time.monotonic()
    while time.monotonic() < deadline:
        try:
            v = check()
        except Exception:  # the page is being redrawn under us: try again
            v = None
        if v:
            return v, time.monotonic() - started
        time.sleep(0.2)
    failures.append("%s: not seen within %d s" % (what, seconds))
    return None, seconds


threading.Thread(target=load, daemon=True).start()
options = Options()
for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--window-size=1500,900", "--disable-extensions", "--no-first-run"):
    options.add_argument(flag)
options.binary_location = "/usr/bin/chromium"
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
try:
    driver.get(instance + "/dashboard")

    def instances():
        return [e.get_attribute("data-id") for e in driver.find_elements(By.CSS_SELECTOR, ".instance")]

    boxes, _ = wait_until("a box per instance (2)", lambda: len(instances()) == 2 and instances(), 15)
    print("figure: instance boxes: %s" % boxes)
    nodes, _ = wait_until(
        "the Redis nodes (6: 3 masters, 3 replicas, all up)",
        lambda: (lambda n: len(n) == 6 and all(e.get_attribute("data-up") == "true" for e in n) and
                 [(e.get_attribute("data-address"), e.get_attribute("data-role")) for e in n])(
            driver.find_elements(By.CSS_SELECTOR, "#redis-nodes .node")), 15)
    print("figure: redis nodes: %s" % nodes)
    rate, _ = wait_until("a non-zero request rate at the load balancer",
                         lambda: float(driver.find_element(By.ID, "lb-rate").text or "0") > 0 and
                         driver.find_element(By.ID, "lb-rate").text, 15)
    print("figure: load balancer req/s: %s" % rate)
    denied, _ = wait_until("a non-zero 429 rate",
                           lambda: float(driver.find_element(By.ID, "resp-denied").text or "0") > 0 and
                           driver.find_element(By.ID, "resp-denied").text, 15)
    print("figure: 429/s: %s" % denied)
    top, _ = wait_until("the test's key (%s) among the top limited" % SHOWN,
                        lambda: [e.get_attribute("data-identity") for e in
                                 driver.find_elements(By.CSS_SELECTOR, "#top-denied tr[data-identity]")
                                 if e.get_attribute("data-identity") == SHOWN], 15)
    lua = driver.find_element(By.ID, "redis-lua").text
    if "floodgate" not in lua:
        failures.append("the Lua library is not shown: %r" % lua)
    time.sleep(1.5)  # a few history points in the chart
    driver.save_screenshot(screenshot)
    print("figure: screenshot %s" % screenshot)

    gone_id = boxes[1] if boxes else ""
    subprocess.run([stack, "stop-instance", "2"], check=True, stdout=subprocess.DEVNULL)
    stopped_at = time.monotonic()
    _, took = wait_until("instance 2 (%s) gone from the page" % gone_id,
                         lambda: gone_id not in instances() and len(instances()) == 1, 10)
    print("figure: stopped instance gone from the page %.1f s after it exited" %
          (time.monotonic() - stopped_at))
finally:
    stop.set()
    driver.quit()

for f in failures:
    print("FAIL: " + f, file=sys.stderr)
sys.exit(1 if failures else 0)

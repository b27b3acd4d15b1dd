"""A headless Chromium driven over the DevTools protocol, standard library only (tests and scripts).

Chromium is started with ``--remote-debugging-pipe``: it reads protocol commands from its file
descriptor 3 and writes replies and events to descriptor 4, one JSON message per NUL-terminated
chunk. No port, no WebSocket client, no PyPI package. One page (a target attached in "flat"
mode) is enough for the report page: load a file, collect console errors, exceptions and failed
requests, evaluate JavaScript, click at a point, and take a full-page screenshot.

    with Browser() as browser:
        page = browser.open(Path("out/report.html"))
        page.problems()        # console errors, uncaught exceptions, failed requests
        page.evaluate("document.title")
        page.screenshot(Path("report.png"))

Not part of the runtime: l2s-engine itself never starts a browser.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Puts descriptor argv[1] on 3 and argv[2] on 4, then becomes argv[3:]. Both are first moved
# above 9, since either may itself be 3 or 4; dup2 leaves 3 and 4 inheritable, the rest is closed.
_WIRE = """
import fcntl, os, sys
ends = [fcntl.fcntl(int(fd), fcntl.F_DUPFD, 10) for fd in sys.argv[1:3]]
for fd in sys.argv[1:3]:
    os.close(int(fd))
for target, fd in zip((3, 4), ends):
    os.dup2(fd, target)
    os.close(fd)
os.execv(sys.argv[3], sys.argv[3:])
"""
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


class BrowserError(RuntimeError):
    """Chromium is missing, died, timed out, or answered a command with an error."""


def find_chromium() -> str | None:
    """The Chromium binary: $CHROMIUM when set, else the first of ``CANDIDATES`` on PATH."""
    if os.environ.get("CHROMIUM"):
        return os.environ["CHROMIUM"]
    return next((found for name in CANDIDATES if (found := shutil.which(name))), None)


class Browser:
    """One headless Chromium process; a context manager that always ends the process.

    Args:
        binary: the executable (default: ``find_chromium()``).
        width, height: the window (CSS pixels).
        timeout: seconds to wait for any one reply or event.
    """

    def __init__(self, binary: str | None = None, width: int = 1200, height: int = 900, timeout: float = 30.0):
        self.binary = binary or find_chromium()
        if self.binary is None:
            raise BrowserError("no Chromium found (apt-get install chromium, or set CHROMIUM=/path/to/it)")
        self.width, self.height, self.timeout = width, height, timeout
        self.events: list[dict] = []  # every event received, in order, with its sessionId
        self._next_id = 0
        self._buffer = b""
        self._process: subprocess.Popen | None = None

    def __enter__(self) -> Browser:
        self._profile = tempfile.mkdtemp(prefix="l2s-chromium-")
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        args = [self.binary, "--headless", "--remote-debugging-pipe", f"--user-data-dir={self._profile}",
                f"--window-size={self.width},{self.height}", "--no-first-run", "--no-default-browser-check",
                "--disable-gpu", "--disable-dev-shm-usage", "--disable-extensions", "--disable-sync",
                "--disable-background-networking", "--disable-component-update", "--mute-audio",
                "--hide-scrollbars", "about:blank"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox

        self._log = open(Path(self._profile) / "chromium.log", "wb")  # noqa: SIM115 (closed in __exit__)
        try:
            # A tiny Python exec()s Chromium with the pipe ends on 3 and 4: no preexec_fn (Python
            # code between fork and exec is unsafe in a process with threads, as a test run has).
            self._process = subprocess.Popen([sys.executable, "-c", _WIRE, str(to_child_r), str(from_child_w), *args],
                                             stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
                                             pass_fds=(to_child_r, from_child_w), start_new_session=True)
        except BaseException:
            self.__exit__(None, None, None)
            raise
        finally:
            os.close(to_child_r)
            os.close(from_child_w)
        try:
            self.call("Browser.getVersion")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            try:
                self._send("Browser.close")
                process.wait(timeout=10)
            except (BrowserError, OSError, subprocess.TimeoutExpired):
                try:  # Chromium and its helpers, which share the session started for it
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                process.wait(timeout=10)
        self._log.close()
        for fd in (self._to_child, self._from_child):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self._profile, ignore_errors=True)
        self._process = None

    @property
    def version(self) -> str:
        return self.call("Browser.getVersion")["product"]

    def call(self, method: str, params: dict | None = None, session: str | None = None,
             timeout: float | None = None) -> dict:
        """Send one command and return its result; events that arrive meanwhile are kept."""
        id_ = self._send(method, params, session)
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            message = self._receive(deadline, f"the reply to {method}")
            if message.get("id") == id_:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error'].get('message')} ({message['error']})")
                return message.get("result", {})
            if "method" in message:
                self.events.append(message)

    def wait_event(self, method: str, session: str | None = None, since: int = 0, timeout: float | None = None) -> dict:
        """The first event ``method`` (of ``session``) at or after index ``since`` of ``events``."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            for event in self.events[since:]:
                if event["method"] == method and (session is None or event.get("sessionId") == session):
                    return event
            since = len(self.events)
            message = self._receive(deadline, f"the event {method}")
            if "method" in message:
                self.events.append(message)

    def open(self, path: Path | str) -> Page:
        """A new page showing ``path`` (a file) or a URL, once its load event has fired."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, target, session)
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable", session=session)
        url = Path(path).resolve().as_uri() if not str(path).startswith(("file:", "about:", "data:")) else str(path)
        page.navigate(url)
        return page

    def _send(self, method: str, params: dict | None = None, session: str | None = None) -> int:
        if self._process is None or self._process.poll() is not None:
            raise BrowserError(f"Chromium is not running (exit status {self._exit_status()}){self._stderr_tail()}")
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        data = json.dumps(message).encode("utf-8") + b"\0"
        try:
            while data:
                data = data[os.write(self._to_child, data):]
        except OSError as exc:  # a broken pipe: Chromium has gone
            raise BrowserError(f"cannot send {method} to Chromium ({exc}){self._stderr_tail()}") from exc
        return self._next_id

    def _receive(self, deadline: float, waiting_for: str) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError(f"Chromium did not send {waiting_for} in time")
            ready, _, _ = select.select([self._from_child], [], [], min(left, 1.0))
            if not ready:
                if self._process.poll() is not None:
                    raise BrowserError(f"Chromium exited (status {self._exit_status()}) while waiting for "
                                       f"{waiting_for}{self._stderr_tail()}")
                continue
            chunk = os.read(self._from_child, 1 << 20)
            if not chunk:
                raise BrowserError(f"Chromium closed the protocol pipe while waiting for {waiting_for}"
                                   f"{self._stderr_tail()}")
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def _exit_status(self):
        return None if self._process is None else self._process.poll()

    def _stderr_tail(self) -> str:
        try:
            text = (Path(self._profile) / "chromium.log").read_bytes()[-800:].decode("utf-8", "replace").strip()
        except OSError:
            return ""
        return f"; its output ends: {text}" if text else ""


class Page:
    """One tab of a ``Browser``, attached in flat mode (commands carry its session id)."""

    def __init__(self, browser: Browser, target: str, session: str):
        self.browser, self.target, self.session = browser, target, session
        self.first_event = len(browser.events)  # this page's events start here

    def navigate(self, url: str) -> None:
        """Go to ``url`` and wait for its load event (images included, lazy ones in view)."""
        since = len(self.browser.events)
        result = self.browser.call("Page.navigate", {"url": url}, session=self.session)
        if result.get("errorText"):
            raise BrowserError(f"cannot open {url}: {result['errorText']}")
        self.browser.wait_event("Page.loadEventFired", self.session, since=since)

    def evaluate(self, expression: str, await_promise: bool = False):
        """The value of a JavaScript expression in the page (JSON-serialisable results)."""
        result = self.browser.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                        "awaitPromise": await_promise}, session=self.session)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            raise BrowserError(f"{expression[:80]!r} threw: {details.get('exception', {}).get('description') or details}")
        return result["result"].get("value")

    def click(self, selector: str) -> None:
        """A real mouse click (press + release) at the centre of the first element matching ``selector``."""
        box = self.evaluate(f"""(function () {{
            var el = document.querySelector({json.dumps(selector)});
            if (!el) return null;
            el.scrollIntoView({{block: "center"}});
            var r = el.getBoundingClientRect();
            return {{x: r.left + r.width / 2, y: r.top + r.height / 2}};
        }})()""")
        if box is None:
            raise BrowserError(f"no element matches {selector!r}")
        for kind in ("mousePressed", "mouseReleased"):
            self.browser.call("Input.dispatchMouseEvent", {"type": kind, "x": box["x"], "y": box["y"],
                                                           "button": "left", "clickCount": 1}, session=self.session)

    def images_loaded(self, timeout: float = 10.0) -> list[dict]:
        """Every ``<img>``: src, complete and naturalWidth, once all are complete (or ``timeout``)."""
        deadline = time.monotonic() + timeout
        while True:
            images = self.evaluate("Array.from(document.images).map(function (i) { return "
                                   "{src: i.getAttribute('src'), complete: i.complete, naturalWidth: i.naturalWidth}; })")
            if all(i["complete"] for i in images) or time.monotonic() > deadline:
                return images
            time.sleep(0.05)

    def problems(self) -> list[str]:
        """Console errors and warnings' errors, uncaught exceptions, failed requests and HTTP errors."""
        out = []
        for event in self.browser.events[self.first_event:]:
            if event.get("sessionId") != self.session:
                continue
            method, params = event["method"], event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                out.append("console: " + " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"]))
            elif method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                out.append("exception: " + str(details.get("exception", {}).get("description") or details.get("text")))
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                entry = params["entry"]
                out.append(f"log ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}".strip())
            elif method == "Network.loadingFailed":
                out.append(f"request failed: {params.get('errorText')} ({params.get('requestId')}, "
                           f"blocked: {params.get('blockedReason')})")
            elif method == "Network.responseReceived" and params["response"].get("status", 200) >= 400:
                out.append(f"HTTP {params['response']['status']}: {params['response'].get('url')}")
        return out

    def requests(self) -> list[str]:
        """The URL of every request the page made."""
        return [e["params"]["request"]["url"] for e in self.browser.events[self.first_event:]
                if e.get("sessionId") == self.session and e["method"] == "Network.requestWillBeSent"]

    def screenshot(self, png_path: Path, width: int | None = None) -> Path:
        """A PNG of the whole page (its full height) at ``width`` CSS pixels."""
        width = width or self.browser.width
        call = self.browser.call
        call("Emulation.setDeviceMetricsOverride", {"width": width, "height": self.browser.height,
                                                    "deviceScaleFactor": 1, "mobile": False}, session=self.session)
        height = int(self.evaluate("Math.ceil(document.documentElement.scrollHeight)"))
        call("Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": 1,
                                                    "mobile": False}, session=self.session)
        self.images_loaded()  # the taller viewport brings lazy images into view
        # a page wider than ``width`` is shown whole: an overflow is something to see, not to hide
        full_width = max(width, int(self.evaluate("Math.ceil(document.documentElement.scrollWidth)")))
        data = call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                               "clip": {"x": 0, "y": 0, "width": full_width, "height": height,
                                                        "scale": 1}},
                    session=self.session, timeout=60)["data"]
        png_path = Path(png_path)
        png_path.parent.mkdir(parents=True, exist_ok=True)
        png_path.write_bytes(base64.b64decode(data))
        return png_path


def screenshot(html_path: Path, png_path: Path, width: int = 1200) -> Path:
    """Render ``html_path`` in headless Chromium and write a full-page PNG ``width`` pixels wide."""
    with Browser(width=width) as browser:
        return browser.open(html_path).screenshot(png_path, width)

"""Headless Chromium driven over the DevTools protocol: open a page, wait until its rendered text
holds what a person would look for, take a screenshot.

Only the `websockets` client (a Prefect dependency) is needed; the browser is Debian's `chromium`.
Chromium is started with the flags this closed network needs (no background networking, no
component updates), so it makes no connection but to the pages it is given.
"""

from __future__ import annotations

import base64
import itertools
import json
import subprocess
import time
from pathlib import Path

import httpx
from websockets.sync.client import connect

from tests.services.services import free_port, wait_for

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1400,1000")


class Page:
    def __init__(self, ws_url: str):
        self._ws = connect(ws_url, max_size=64 * 2**20, open_timeout=30)
        self._ids = itertools.count(1)

    def call(self, method: str, **params) -> dict:
        msg_id = next(self._ids)
        self._ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self._ws.recv(timeout=60))
            if reply.get("id") == msg_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]

    def text(self) -> str:
        result = self.call("Runtime.evaluate", expression="document.body ? document.body.innerText : ''",
                           returnByValue=True)
        return result["result"].get("value") or ""

    def wait_for_text(self, needles: list[str], *, timeout: float) -> str:
        """The page's rendered text once it contains every needle (fails the test after timeout)."""
        last = {"text": ""}

        def ready():
            last["text"] = self.text()
            return last["text"] if all(n in last["text"] for n in needles) else None
        try:
            return wait_for(ready, timeout=timeout, what=f"the page to show {needles}", every=1)
        except BaseException:
            print("page text at timeout:\n", last["text"][:3000])
            raise

    def screenshot(self, path: Path) -> Path:
        time.sleep(1)  # let the last render settle
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        self._ws.close()


class Chromium:
    def __init__(self, binary: str, profile: Path):
        self.binary, self.profile = binary, profile
        self.port = free_port()
        self._pages: list[Page] = []

    def __enter__(self) -> "Chromium":
        self.proc = subprocess.Popen([self.binary, *FLAGS, f"--remote-debugging-port={self.port}",
                                      f"--user-data-dir={self.profile}", "about:blank"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def up():
            try:
                return httpx.get(f"http://127.0.0.1:{self.port}/json/version", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False
        wait_for(up, timeout=60, what="chromium's DevTools endpoint")
        return self

    def open(self, url: str) -> Page:
        target = httpx.put(f"http://127.0.0.1:{self.port}/json/new?{url}", timeout=30).json()
        page = Page(target["webSocketDebuggerUrl"])
        page.call("Page.enable")
        self._pages.append(page)
        return page

    def __exit__(self, *exc) -> None:
        for page in self._pages:
            page.close()
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()

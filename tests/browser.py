"""Open a local HTML page in headless Chromium through the DevTools protocol: console errors,
failed loads, which images decoded, and a full-page screenshot. Tests skip without chromium
(Debian's package; .ci/setup installs it) or websocket-client (the test extra)."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class PageLoad:
    errors: list[str] = field(default_factory=list)  # console errors, exceptions, failed loads
    images: list[tuple[str, bool]] = field(default_factory=list)  # (src, decoded with a size)
    title: str = ""
    text: str = ""


class _Session:
    def __init__(self, ws_url: str) -> None:
        import websocket

        self.ws = websocket.create_connection(ws_url, timeout=30, suppress_origin=True)
        self.next_id = 0
        self.events: list[dict] = []

    def call(self, method: str, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    def wait_event(self, method: str, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        for i, ev in enumerate(self.events):
            if ev.get("method") == method:
                return self.events.pop(i)
        while time.monotonic() < deadline:
            msg = json.loads(self.ws.recv())
            if msg.get("method") == method:
                return msg
            self.events.append(msg)
        raise TimeoutError(method)


def load_page(page: Path, screenshot: Path | None = None, width: int = 1280) -> PageLoad:
    """Load ``page`` (a local file), wait for its load event, and report what the browser saw."""
    pytest.importorskip("websocket", reason="needs websocket-client (the test extra)")
    exe = chromium_path()
    if exe is None:
        pytest.skip("needs a Chromium binary (apt-get install chromium)")
    profile = tempfile.mkdtemp(prefix="retina-chromium-")
    proc = subprocess.Popen(
        [exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
         "--remote-debugging-port=0", f"--user-data-dir={profile}", f"--window-size={width},900", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        port = None
        deadline = time.monotonic() + 60
        while port is None and time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line and proc.poll() is not None:
                raise RuntimeError(f"chromium exited with {proc.returncode}")
            m = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
            port = int(m.group(1)) if m else None
        targets = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10).read())
        target = next(t for t in targets if t.get("type") == "page")
        s = _Session(target["webSocketDebuggerUrl"])
        for domain in ("Page", "Runtime", "Log"):
            s.call(f"{domain}.enable")
        s.call("Page.navigate", url=page.resolve().as_uri())
        s.wait_event("Page.loadEventFired")
        images = s.call("Runtime.evaluate", returnByValue=True, expression=(
            "JSON.stringify([...document.images].map(i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0]))"
        ))["result"]["value"]
        title = s.call("Runtime.evaluate", expression="document.title", returnByValue=True)["result"]["value"]
        text = s.call("Runtime.evaluate", expression="document.body.innerText", returnByValue=True)["result"]["value"]
        if screenshot is not None:
            shot = s.call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
            screenshot.write_bytes(base64.b64decode(shot["data"]))
        out = PageLoad(images=[tuple(x) for x in json.loads(images)], title=title, text=text)
        for ev in s.events:
            method, params = ev.get("method"), ev.get("params", {})
            if method == "Runtime.exceptionThrown":
                out.errors.append(params["exceptionDetails"].get("text", "exception"))
            elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                out.errors.append(" ".join(str(a.get("value", "")) for a in params.get("args", [])))
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                out.errors.append(f"{params['entry'].get('text', '')} {params['entry'].get('url', '')}")
        s.ws.close()
        return out
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(profile, ignore_errors=True)

"""Headless Chromium driven over the DevTools protocol, logged into Home Assistant."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import aiohttp

from script.harness.procs import free_port, stop

from .hass_process import Tokens, poll

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--remote-debugging-address=127.0.0.1",
)

# Text of the page including every shadow root (HA's frontend is all web components).
DEEP_TEXT = """(() => {
  const parts = [];
  const skip = new Set(["SCRIPT", "STYLE", "NOSCRIPT", "TEMPLATE"]);
  const walk = (node) => {
    if (node.nodeType === Node.TEXT_NODE) { parts.push(node.textContent); return; }
    if (skip.has(node.nodeName)) return;
    if (node.shadowRoot) walk(node.shadowRoot);
    for (const child of node.childNodes) walk(child);
  };
  walk(document.body);
  return parts.join(" ").replace(/\\s+/g, " ");
})()"""

# The viewport rectangle of an element found through the shadow roots: the first element
# named by the first tag, then within it (its shadow root first) the next tag, and so on.
FIND_BOX = """((tags) => {
  const find = (root, tag) => {
    for (const el of root.querySelectorAll('*')) {
      if (el.tagName === tag) return el;
      if (el.shadowRoot) { const found = find(el.shadowRoot, tag); if (found) return found; }
    }
    return null;
  };
  let el = document;
  for (const tag of tags) {
    const found = (el.shadowRoot && find(el.shadowRoot, tag)) || find(el, tag);
    if (!found) return null;
    el = found;
  }
  const rect = el.getBoundingClientRect();
  if (!rect.width || !rect.height) return null;
  return {x: rect.x, y: rect.y, width: rect.width, height: rect.height};
})"""

# Click the first element (shadow roots included) whose own text or label is `label`:
# buttons, menu items, list items. Returns whether one was found.
CLICK_LABEL = """((label) => {
  const clickable = new Set(["HA-BUTTON", "MWC-BUTTON", "BUTTON", "HA-MD-MENU-ITEM", "HA-LIST-ITEM",
    "HA-DROPDOWN-ITEM", "HA-MD-LIST-ITEM", "HA-ICON-BUTTON", "HA-MENU-ITEM"]);
  const named = (el) => (el.getAttribute?.("label") || el.label || el.textContent || "").trim();
  const find = (root) => {
    for (const el of root.querySelectorAll("*")) {
      if (clickable.has(el.tagName) && named(el) === label) return el;
      if (el.shadowRoot) { const found = find(el.shadowRoot); if (found) return found; }
    }
    return null;
  };
  const el = find(document);
  if (el) el.click();
  return el !== null;
})"""

# connected to HA's websocket, and the launch screen (the "Loading..." splash) is gone
READY = (
    "document.querySelector('home-assistant')?.hass?.connected === true"
    " && !document.getElementById('ha-launch-screen')"
)


@dataclass(frozen=True, slots=True)
class Box:
    """An element's rectangle in viewport pixels (CSS pixels: the scale factor is 1)."""

    x: float
    y: float
    width: float
    height: float


def chromium_binary() -> str:
    """Debian's chromium (script/bootstrap installs it)."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found:
        raise RuntimeError("chromium is not installed: run script/bootstrap")
    return found


class Chromium:
    """One headless Chromium with a fresh profile and one page, stopped by PID on exit."""

    def __init__(self, directory: Path, width: int = 1280, height: int = 900) -> None:
        self.directory = directory
        self.width = width
        self.height = height
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._id = 0

    def _launch(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        with (self.directory / "chromium.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    chromium_binary(),
                    *FLAGS,
                    f"--remote-debugging-port={self.port}",
                    f"--user-data-dir={self.directory / 'profile'}",
                    f"--window-size={self.width},{self.height}",
                    "about:blank",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    async def __aenter__(self) -> Self:
        await asyncio.to_thread(self._launch)
        page = await poll(self._page_target, 30, "Chromium's DevTools endpoint")
        self._ws = await self.session.ws_connect(page["webSocketDebuggerUrl"], max_msg_size=0)
        await self.send("Page.enable")
        await self.send("Runtime.enable")
        await self.send(
            "Emulation.setDeviceMetricsOverride",
            width=self.width,
            height=self.height,
            deviceScaleFactor=1,
            mobile=False,
        )
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._ws is not None:
            await self._ws.close()
        await self.session.close()
        stop(self.proc, timeout=15)

    async def _page_target(self) -> dict[str, Any] | None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"chromium exited with {self.proc.returncode}")
        try:
            async with self.session.get(f"http://127.0.0.1:{self.port}/json/list") as response:
                targets = await response.json()
        except aiohttp.ClientError:
            return None
        return next((target for target in targets if target["type"] == "page"), None)

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        """Call a DevTools method on the page and return its result."""
        assert self._ws is not None
        self._id += 1
        await self._ws.send_str(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            message = json.loads((await self._ws.receive()).data)
            if message.get("id") == self._id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message["result"]
                return result

    async def evaluate(self, expression: str, *, await_promise: bool = False) -> Any:
        """Evaluate JavaScript in the page and return its value (a promise's, if awaited)."""
        answer = await self.send(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=await_promise
        )
        if "exceptionDetails" in answer:
            raise RuntimeError(f"{expression[:80]}: {answer['exceptionDetails']}")
        return answer["result"].get("value")

    async def open_hass(self, url: str, tokens: Tokens, path: str, within: float = 60) -> None:
        """Open a Home Assistant page logged in, and wait until the frontend is connected."""
        stored = json.dumps(json.dumps(tokens.for_frontend(url)))
        await self.send(
            "Page.addScriptToEvaluateOnNewDocument",
            source=f"localStorage.setItem('hassTokens', {stored});",
        )
        await self.send("Page.navigate", url=url + path)
        await poll(lambda: self.evaluate(READY), within, f"the frontend at {path} to connect")

    async def text(self) -> str:
        """The page's text, shadow roots included."""
        return str(await self.evaluate(DEEP_TEXT))

    async def wait_text(self, *needles: str, within: float = 30) -> str:
        """Wait until the page shows every one of `needles`; return the page's text."""

        async def shown() -> str | None:
            text = await self.text()
            return text if all(needle in text for needle in needles) else None

        result: str = await poll(shown, within, f"the page to show {needles}")
        return result

    async def click(self, label: str, within: float = 30) -> None:
        """Click the button or menu item labelled `label` once it is shown."""
        await poll(
            lambda: self.evaluate(f"{CLICK_LABEL}({json.dumps(label)})"), within, f"{label!r} to click"
        )

    async def box(self, *tags: str) -> Box | None:
        """The rectangle of the element at the end of `tags` (see FIND_BOX), None if not shown."""
        found = await self.evaluate(f"{FIND_BOX}({json.dumps([t.upper() for t in tags])})")
        return None if found is None else Box(**found)

    async def screenshot_with_box(self, path: Path, *tags: str, within: float = 30) -> tuple[Path, Box]:
        """Save a PNG of the page and return where the element named by `tags` is on it.

        The box is measured before and after the capture; a layout still moving is retried.
        """

        async def steady() -> tuple[Path, Box] | None:
            before = await self.box(*tags)
            if before is None:
                return None
            await self.screenshot(path)
            return (path, before) if await self.box(*tags) == before else None

        result: tuple[Path, Box] = await poll(steady, within, f"{tags} to be shown and still")
        return result

    async def screenshot(self, path: Path) -> Path:
        """Save a PNG of the page."""
        answer = await self.send("Page.captureScreenshot", format="png")

        def write() -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(base64.b64decode(answer["data"]))

        await asyncio.to_thread(write)
        return path

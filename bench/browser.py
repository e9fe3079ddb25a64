"""browser.scrape through the whole engine, beside the floor and beside Playwright.

Serves a small page on 127.0.0.1 and measures, in one run, medians of:

- `engine_job_ms`: a `browser.scrape` job through a real `chaser serve` (embedded NATS, its
  own Chromium): from sending `POST /v1/jobs` to the job's `JobSucceeded` event arriving on
  NATS. `back_to_back` creates each job as soon as the previous one succeeded; `paced` leaves
  0.5 s between jobs (the engine keeps a fresh browser context ready when it has the time).
- `raw_cdp_floor_ms`: a minimal hand-written raw-CDP scrape of the same page on an
  already-running browser (same binary, same flags): a new browser context and page, navigate,
  wait for `load`, one `Runtime.evaluate`, dispose. `reused_page` navigates one page instead.
- `playwright_ms`: Playwright for Python driving the same Chromium (`executable_path`), a new
  context per scrape, when Playwright is importable or `pip install playwright` works into a
  cache virtualenv (it never downloads browsers).

Rounds interleave the three, so load from anything else on the machine hits them alike.

    .venv/bin/python bench/browser.py [--jobs 30] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import nats
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from executors.browser.chromium import find_chromium, launch_args
from tests.support.server import ChaserServer, kill_embedded_nats

PAGE = b"""<!doctype html><html><head><title>Bench page</title><link rel="icon" href="data:,">
</head><body><h1>Bench</h1><ul><li class="item">one</li><li class="item">two</li>
<li class="item">three</li></ul><p>Some text.</p></body></html>"""
SELECTOR = "li.item"
EXTRACT = (
    "({url: location.href, title: document.title, "
    f"texts: Array.from(document.querySelectorAll({json.dumps(SELECTOR)}), e => e.innerText)}})"
)
PLAYWRIGHT_VENV = Path.home() / ".cache" / "chaser-bench" / "playwright-venv"


class _Page(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(PAGE)))
        self.end_headers()
        self.wfile.write(PAGE)

    def log_message(self, *args: object) -> None:
        pass


def serve_page() -> tuple[ThreadingHTTPServer, str]:
    """The page, on a loopback port, served from a thread."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


# -- the floor: a minimal raw-CDP client -------------------------------------------------------


class RawBrowser:
    """Chromium and one browser-level WebSocket, nothing else."""

    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.waiters: list[tuple[str, str | None, asyncio.Future[None]]] = []

    async def start(self) -> None:
        self.profile = tempfile.mkdtemp(prefix="bench-raw-")
        args = launch_args(
            self.binary,
            user_data_dir=self.profile,
            proxy_url="direct://",
            as_root=os.geteuid() == 0,
        )
        args = [a for a in args if not a.startswith(("--proxy-", "--force-webrtc"))]
        self.process = await asyncio.create_subprocess_exec(
            *args, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
        )
        assert self.process.stderr is not None
        while b"DevTools listening on" not in (line := await self.process.stderr.readline()):
            pass
        self.drain = asyncio.create_task(self._drain())
        self.ws = await websockets.connect(line.split()[-1].decode(), max_size=None)
        self.reader = asyncio.create_task(self._read())

    async def _drain(self) -> None:
        assert self.process.stderr is not None
        while await self.process.stderr.readline():
            pass

    async def _read(self) -> None:
        async for raw in self.ws:
            msg = json.loads(raw)
            if "id" in msg:
                self.pending.pop(msg["id"]).set_result(msg.get("result", {}))
                continue
            for method, session, future in list(self.waiters):
                if msg.get("method") == method and msg.get("sessionId") == session:
                    self.waiters.remove((method, session, future))
                    future.set_result(None)

    async def call(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> dict[str, Any]:
        call_id = next(self.ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[call_id] = future
        message: dict[str, Any] = {"id": call_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        await self.ws.send(json.dumps(message))
        return await future

    def event(self, method: str, session: str) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append((method, session, future))
        return future

    async def open_page(self) -> tuple[str, str]:
        context = (await self.call("Target.createBrowserContext"))["browserContextId"]
        target = await self.call(
            "Target.createTarget", {"url": "about:blank", "browserContextId": context}
        )
        attached = await self.call(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
        )
        session = attached["sessionId"]
        await self.call("Page.enable", session=session)
        return context, session

    async def scrape(self, session: str, url: str) -> dict[str, Any]:
        loaded = self.event("Page.loadEventFired", session)
        await self.call("Page.navigate", {"url": url}, session)
        await loaded
        result = await self.call(
            "Runtime.evaluate", {"expression": EXTRACT, "returnByValue": True}, session
        )
        value: dict[str, Any] = result["result"]["value"]
        return value

    async def fresh_context_scrape(self, url: str) -> dict[str, Any]:
        context, session = await self.open_page()
        try:
            return await self.scrape(session, url)
        finally:
            await self.call("Target.disposeBrowserContext", {"browserContextId": context})

    async def stop(self) -> None:
        self.process.kill()
        await self.process.wait()
        await self.ws.close()
        self.reader.cancel()
        self.drain.cancel()
        await asyncio.to_thread(shutil.rmtree, self.profile, True)


async def floor_round(
    browser: RawBrowser, url: str, runs: int, reused: tuple[str, str]
) -> tuple[list[float], list[float]]:
    fresh, again = [], []
    for _ in range(runs):
        start = time.perf_counter()
        value = await browser.fresh_context_scrape(url)
        fresh.append((time.perf_counter() - start) * 1000)
        assert value["texts"] == ["one", "two", "three"], value
    for _ in range(runs):
        start = time.perf_counter()
        await browser.scrape(reused[1], url)
        again.append((time.perf_counter() - start) * 1000)
    return fresh, again


# -- the engine --------------------------------------------------------------------------------


class Engine:
    """A `chaser serve` and a client that times jobs to their JobSucceeded event."""

    def __init__(self, data_dir: Path) -> None:
        env = {
            "CHASER_EXECUTOR_FAMILIES": "system,lifecycle,browser",
            "CHASER_BROWSER_ALLOW": "127.0.0.1/32",
            "CHASER_LOG_LEVEL": "warning",
        }
        self.server = ChaserServer(data_dir, env=env)

    async def start(self) -> None:
        await asyncio.to_thread(self.server.start)
        self.key = await asyncio.to_thread(self.server.create_key, "bench")
        url = json.loads((self.server.data_dir / "nats.json").read_text())["url"]
        self.nc = await nats.connect(url)
        self.done: dict[str, asyncio.Future[str]] = {}
        self.early: dict[str, str] = {}
        await self.nc.subscribe("chaser.*.bench.job.*.JobSucceeded", cb=self._on_end)
        await self.nc.subscribe("chaser.*.bench.job.*.JobFailed", cb=self._on_end)
        self.http = httpx.AsyncClient(
            base_url=self.server.url, headers={"Authorization": f"Bearer {self.key}"}, timeout=60
        )

    async def _on_end(self, msg: Any) -> None:
        tokens = msg.subject.split(".")
        job_id, outcome = tokens[4], tokens[5]
        future = self.done.get(job_id)
        if future is not None and not future.done():
            future.set_result(outcome)
        else:
            self.early[job_id] = outcome

    async def job(self, url: str) -> float:
        start = time.perf_counter()
        response = await self.http.post(
            "/v1/jobs", json={"kind": "browser.scrape", "input": {"url": url, "selector": SELECTOR}}
        )
        job_id = response.json()["id"]
        future = self.done.setdefault(job_id, asyncio.get_running_loop().create_future())
        if job_id in self.early:
            future.set_result(self.early.pop(job_id))
        outcome = await future
        elapsed = (time.perf_counter() - start) * 1000
        if outcome != "JobSucceeded":
            job = (await self.http.get(f"/v1/jobs/{job_id}")).json()
            raise RuntimeError(f"bench job failed: {job['error']}")
        return elapsed

    async def stop(self) -> None:
        await self.http.aclose()
        await self.nc.close()
        code = await asyncio.to_thread(self.server.stop)
        if code is not None and code < 0:
            kill_embedded_nats(self.server.data_dir)


async def engine_round(engine: Engine, url: str, runs: int) -> tuple[list[float], list[float]]:
    back_to_back = [await engine.job(url) for _ in range(runs)]
    paced = []
    for _ in range(runs):
        await asyncio.sleep(0.5)
        paced.append(await engine.job(url))
    return back_to_back, paced


# -- Playwright --------------------------------------------------------------------------------

PLAYWRIGHT_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    from playwright.sync_api import sync_playwright
    binary, url, selector = sys.argv[1], sys.argv[2], sys.argv[4]
    runs, root = int(sys.argv[3]), sys.argv[5] == "1"
    times = []
    with sync_playwright() as p:
        args = ["--no-sandbox"] if root else []
        browser = p.chromium.launch(executable_path=binary, headless=True, args=args)
        for i in range(runs + 3):
            start = time.perf_counter()
            context = browser.new_context()
            page = context.new_page()
            response = page.goto(url, wait_until="load")
            texts = page.locator(selector).all_inner_texts()
            title = page.title()
            status = response.status
            context.close()
            assert texts == ["one", "two", "three"] and title and status == 200
            if i >= 3:
                times.append((time.perf_counter() - start) * 1000)
        browser.close()
    print(json.dumps(times))
    """
)


def playwright_python() -> tuple[str | None, str]:
    """An interpreter that has Playwright: this one, or a cache venv it is installed into."""
    try:
        import playwright  # noqa: F401
    except ImportError:
        pass
    else:
        return sys.executable, "installed here"
    python = PLAYWRIGHT_VENV / "bin" / "python"
    if python.exists():
        probe = subprocess.run(
            [python, "-c", "import playwright"], capture_output=True, check=False
        )
        if probe.returncode == 0:
            return str(python), f"from {PLAYWRIGHT_VENV}"
    try:
        subprocess.run(
            [sys.executable, "-m", "venv", str(PLAYWRIGHT_VENV)],
            check=True,
            capture_output=True,
            timeout=120,
        )
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "playwright"],
            check=True,
            capture_output=True,
            timeout=300,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        return None, f"pip install playwright failed: {exc}"
    return str(python), f"installed into {PLAYWRIGHT_VENV}"


async def playwright_round(python: str, binary: str, url: str, runs: int) -> list[float]:
    process = await asyncio.create_subprocess_exec(
        python,
        "-c",
        PLAYWRIGHT_SCRIPT,
        binary,
        url,
        str(runs),
        SELECTOR,
        "1" if os.geteuid() == 0 else "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"playwright run failed: {err.decode()[-2000:]}")
    times: list[float] = json.loads(out)
    return times


# -- the run -----------------------------------------------------------------------------------


def _median(values: list[float]) -> float:
    return round(statistics.median(values), 1)


async def main(jobs: int, rounds: int) -> dict[str, Any]:
    binary = find_chromium()
    if binary is None:
        return {"error": "no Chromium binary found"}
    page_server, url = serve_page()
    pw_python, pw_note = await asyncio.to_thread(playwright_python)
    samples: dict[str, list[float]] = {k: [] for k in ("fresh", "reused", "b2b", "paced", "pw")}
    with tempfile.TemporaryDirectory(prefix="chaser-bench-browser-") as tmp:
        engine = Engine(Path(tmp) / "data")
        raw = RawBrowser(binary)
        await engine.start()
        await raw.start()
        try:
            reused = await raw.open_page()
            for _ in range(5):  # warm-up: browsers up, caches warm
                await engine.job(url)
                await raw.fresh_context_scrape(url)
                await raw.scrape(reused[1], url)
            for _ in range(rounds):
                fresh, again = await floor_round(raw, url, jobs, reused)
                samples["fresh"] += fresh
                samples["reused"] += again
                b2b, paced = await engine_round(engine, url, jobs)
                samples["b2b"] += b2b
                samples["paced"] += paced
                if pw_python is not None:
                    samples["pw"] += await playwright_round(pw_python, binary, url, jobs)
        finally:
            await raw.stop()
            await engine.stop()
            page_server.shutdown()
    floor = _median(samples["fresh"])
    result: dict[str, Any] = {
        "chromium": binary,
        "page": "local, 3 matches of li.item, wait_until load",
        "samples_each": jobs * rounds,
        "engine_job_ms": {
            "back_to_back": _median(samples["b2b"]),
            "paced": _median(samples["paced"]),
        },
        "raw_cdp_floor_ms": {"fresh_context": floor, "reused_page": _median(samples["reused"])},
        "engine_vs_floor": {
            "back_to_back": round(_median(samples["b2b"]) / floor, 2),
            "paced": round(_median(samples["paced"]) / floor, 2),
        },
        "playwright_ms": _median(samples["pw"]) if samples["pw"] else None,
        "playwright": pw_note if pw_python else f"unavailable: {pw_note}",
    }
    if samples["pw"]:
        result["engine_vs_playwright"] = {
            "back_to_back": round(_median(samples["b2b"]) / _median(samples["pw"]), 2),
            "paced": round(_median(samples["paced"]) / _median(samples["pw"]), 2),
        }
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20, help="samples per kind per round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sys.stdout.write(json.dumps(asyncio.run(main(args.jobs, args.rounds)), indent=2) + "\n")

"""The README's dashboard screenshots, from a real ``taskstore serve`` over a store with a realistic hour in it.

    python3 -m bench.screenshots [--out docs]

Fills a temporary SQLite store (an hour of finished work on four queues, two kinds of failure among the dead,
a backlog, a paused queue, two live workers with running tasks, a recurring schedule), starts ``taskstore
serve`` on it, and saves ``dashboard-overview.png`` and ``dashboard-task.png`` (1280 px wide) with Playwright
driving Debian's Chromium (``/usr/bin/chromium``). Everything it starts is stopped before it returns.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import taskstore
from taskstore import Failure, FakeClock, NewTask, RecurringTask, State, WorkerHeartbeat

SECRET = "screenshot-admin-secret"
QUEUES = {
    "mail": ("send_welcome", "send_receipt", "send_digest"),
    "billing": ("charge_card", "refund"),
    "webhooks": ("deliver_webhook",),
    "reports": ("render_pdf", "export_csv"),
}
SMTP_TRACEBACK = """Traceback (most recent call last):
  File "/srv/app/worker.py", line 88, in run
    result = await handler(**task.args["kwargs"])
  File "/srv/app/mail/tasks.py", line 41, in send_receipt
    await smtp.send_message(message)
  File "/srv/app/mail/smtp.py", line 120, in send_message
    raise SMTPRecipientsRefused(code, reply)
aiosmtplib.errors.SMTPRecipientsRefused: 552 mailbox full for user 4471"""
WEBHOOK_TRACEBACK = """Traceback (most recent call last):
  File "/srv/app/worker.py", line 88, in run
    result = await handler(**task.args["kwargs"])
  File "/srv/app/hooks/tasks.py", line 27, in deliver_webhook
    response = await client.post(url, json=event, timeout=30)
  File "/srv/app/.venv/lib/python3.12/site-packages/httpx/_client.py", line 1629, in post
    raise ReadTimeout(message) from exc
httpx.ReadTimeout: endpoint https://hooks.example.com/orders did not answer within 30.0 s"""


def _args(kind: str, i: int) -> dict[str, Any]:
    if kind == "deliver_webhook":
        event = {"type": "order.paid", "order_id": 48_000 + i, "amount": {"value": 129.9, "currency": "EUR"}}
        return {"args": [], "kwargs": {"url": "https://hooks.example.com/orders", "event": event}}
    if kind.startswith("send_"):
        return {"args": [], "kwargs": {"to": f"customer{i}@example.com", "template": kind[5:], "locale": "en"}}
    if kind in ("charge_card", "refund"):
        return {"args": [f"inv_{20_000 + i}"], "kwargs": {"amount_cents": 1_990 + i % 50 * 100}}
    return {"args": [f"2026-11-{i % 28 + 1:02d}"], "kwargs": {"format": "A4"}}


def _failure(kind: str, i: int) -> Failure:
    if kind == "deliver_webhook":
        message = "endpoint https://hooks.example.com/orders did not answer within 30.0 s"
        return Failure("httpx.ReadTimeout", message, traceback=WEBHOOK_TRACEBACK)
    message = f"552 mailbox full for user {4_000 + i}"
    return Failure("SMTPRecipientsRefused", message, traceback=SMTP_TRACEBACK, retryable=False)


async def _past_hour(url: str, rng: random.Random) -> str:
    """An hour of work, minute by minute, on a clock that starts an hour ago; returns a dead webhook task's id."""
    start = datetime.now(UTC) - timedelta(minutes=62)
    clock = FakeClock(start)
    dead_hook = ""
    async with taskstore.open(url, clock=clock) as store:
        n = 0
        for minute in range(60):
            clock.set(start + timedelta(minutes=minute))
            batch = []
            for queue, kinds in QUEUES.items():
                for _ in range(rng.randint(2, 9) if queue != "reports" else rng.randint(0, 2)):
                    kind = rng.choice(kinds)
                    batch.append(NewTask(queue, kind, _args(kind, n), max_attempts=3))
                    n += 1
            await store.create_many(batch)
            clock.advance(rng.uniform(5, 40))
            for task in await store.claim(f"worker-{minute % 3}", limit=len(batch) + 5):
                bad = (task.kind == "deliver_webhook" and rng.random() < 0.35) or (
                    task.kind == "send_receipt" and rng.random() < 0.2
                )
                if bad:
                    ended = await store.mark_failed(task, _failure(task.kind, n))
                    if ended.state is State.DEAD and task.kind == "deliver_webhook":
                        dead_hook = task.id
                else:
                    await store.mark_done(task, result={"ok": True, "ms": rng.randint(8, 900)})
    return dead_hook


async def _now(url: str, rng: random.Random) -> None:
    """The present: a backlog, scheduled work, a paused queue, two live workers running tasks, a schedule."""
    async with taskstore.open(url) as store:
        now = store.now()
        backlog = [NewTask("mail", rng.choice(QUEUES["mail"]), _args("send_digest", i)) for i in range(140)]
        backlog += [NewTask("billing", "charge_card", _args("charge_card", i)) for i in range(12)]
        backlog += [
            NewTask("reports", "render_pdf", _args("render_pdf", i), run_at=now + timedelta(minutes=5 * i))
            for i in range(6)
        ]
        await store.create_many(backlog)
        await store.pause_queue("reports")
        for worker, queues in (("web-1:worker", ["mail", "billing"]), ("web-2:worker", ["mail", "webhooks"])):
            host, pid = worker.split(":")[0], rng.randint(900, 9999)
            await store.set_worker_heartbeat(WorkerHeartbeat(worker, queues=queues, inflight=2, host=host, pid=pid))
            await store.claim(worker, queues, limit=2)
        template = NewTask("reports", "export_csv", {"args": ["daily"], "kwargs": {}})
        await store.add_recurring(RecurringTask("nightly-export", "0 2 * * *", template))
        await store.add_recurring(RecurringTask("digest-every-15-min", "*/15 * * * *", NewTask("mail", "send_digest")))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(url: str, port: int, log: Any) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "taskstore", "serve", "--url", url, "--port", str(port), "--log-level", "warning"]
    cmd += ["--token", f"admin:{SECRET}"]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/openapi.json", timeout=1).close()
            return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError("taskstore serve did not start") from None
            time.sleep(0.1)


def _shoot(base: str, task_id: str, out: Path) -> None:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
        try:
            # A short viewport: a full-page shot is then as tall as the page, with no blank space below it.
            page = browser.new_page(viewport={"width": 1280, "height": 600})
            page.goto(f"{base}/login")
            page.fill("input[name=token]", SECRET)
            page.click("button[type=submit]")
            page.wait_for_url(f"{base}/")
            page.wait_for_load_state("networkidle")
            page.screenshot(path=str(out / "dashboard-overview.png"), full_page=True)
            page.goto(f"{base}/tasks/{task_id}")
            page.wait_for_load_state("networkidle")
            page.screenshot(path=str(out / "dashboard-task.png"), full_page=True)
        finally:
            browser.close()


def main(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(2026)  # the same pictures every run (but for the times)
    with tempfile.TemporaryDirectory(prefix="taskstore-shots-") as tmp:
        url = f"sqlite:///{tmp}/store.db"
        task_id = asyncio.run(_past_hour(url, rng))
        asyncio.run(_now(url, rng))
        port = _free_port()
        with open(os.path.join(tmp, "serve.log"), "wb") as log:
            proc = _serve(url, port, log)
            try:
                _shoot(f"http://127.0.0.1:{port}", task_id, out)
            finally:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    for name in ("dashboard-overview.png", "dashboard-task.png"):
        print(f"{out / name}: {(out / name).stat().st_size // 1024} KB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("docs"))
    main(parser.parse_args().out)

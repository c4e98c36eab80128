"""The dashboard's pages and actions: server-rendered from the store on every request, nothing kept in memory.

Pages read through the same Store methods as the CLI and the API; actions (Retry, Cancel, Pause, Resume, the
bulk retry and discard of a failure group) call them too, after the role and CSRF checks. Task data is untrusted: every
value reaches the page through Jinja2's autoescaping, and large payloads are cut with a link to the whole.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from ... import errors
from ..._render import task_json
from ..._statuses import TASK_TO_STATUS
from ...model import Page as TaskPage
from ...model import State, Task, check_kind
from ..auth import Role
from ..problems import HTTPProblem
from . import session
from .charts import activity_charts
from .failures import failure_groups

HERE = Path(__file__).resolve().parent
PAYLOAD_SHOWN = 16 * 1024  # characters of a payload shown on a page; the rest is a download away
PAGE_SIZE = 50
# Pages run only our own files: no inline script, nothing from elsewhere, never framed.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


# Autoescaping everywhere (not only for .html names): every value on a page may be a producer's data.
def _root_of(request: Request) -> dict[str, str]:
    """``root``: where the app is mounted ("" at the top), so every link works under a prefix too."""
    return {"root": _root(request)}


def _root(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


templates = Jinja2Templates(
    env=jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True, auto_reload=False),
    context_processors=[_root_of],
)


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str, sort_keys=False)


def _ago(at: datetime | None, now: datetime) -> str:
    if at is None:
        return ""
    seconds = (now - at).total_seconds()
    future = seconds < 0
    seconds = abs(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if seconds >= size or unit == "s":
            text = f"{seconds / size:.0f} {unit}"
            return f"in {text}" if future else f"{text} ago"
    return ""


def _query(**params: str | None) -> str:
    """A page's query string from its filters, leaving out the empty ones (escaped as a URL, then by Jinja2)."""
    kept = {k: v for k, v in params.items() if v}
    return "?" + urlencode(kept) if kept else "?"


templates.env.filters["pretty"] = _pretty
templates.env.globals["State"] = State
templates.env.globals["query"] = _query


@dataclass(frozen=True)
class Page:
    request: Request
    role: Role
    csrf: str
    now: datetime

    @property
    def can_act(self) -> bool:
        return self.role >= Role.ADMIN


def _state(request: Request) -> Any:
    return request.app.state.taskstore


def _role(request: Request) -> Role | None:
    state = _state(request)
    client = request.client
    peer = client.host if client else None
    header = request.headers.get("authorization")
    if header is not None:
        return state.auth.role_of(header, peer)  # type: ignore[no-any-return]
    token = session.cookie_token(request)
    if token is not None and not state.auth.open:
        return state.auth.role_of_secret(token)  # type: ignore[no-any-return]
    return state.auth.role_of(None, peer)  # type: ignore[no-any-return]


Render = Callable[[Request, Page], Awaitable[Response]]


def page(render: Render) -> Callable[[Request], Awaitable[Response]]:
    """A page: logged-in readers only (others go to the login form), with a CSRF value for its forms."""

    async def view(request: Request) -> Response:
        role = _role(request)
        if role is None:
            return RedirectResponse(f"{_root(request)}/login?next={quote(request.url.path)}", status_code=303)
        store = await _state(request).store()
        csrf, fresh = session.csrf_for(request)
        try:
            response = await render(request, Page(request, role, csrf, store.now()))
        except errors.NotFound as exc:
            response = templates.TemplateResponse(
                request, "missing.html", {"page": Page(request, role, csrf, store.now()), "message": str(exc)}, 404
            )
        return _finish(request, response, csrf, fresh)

    return view


def _finish(request: Request, response: Response, csrf: str, fresh: bool) -> Response:
    """Every page: its security headers, and the CSRF cookie when this browser had none."""
    if fresh:
        session.set_csrf(request, response, csrf)
    response.headers.update(SECURITY_HEADERS)
    return response


Act = Callable[[Request, Any], Awaitable[str]]


def action(act: Act) -> Callable[[Request], Awaitable[Response]]:
    """An action: admins only, with a valid CSRF value; then back to the page it names (303)."""

    async def view(request: Request) -> Response:
        role = _role(request)
        if role is None or role < Role.ADMIN:
            return HTMLResponse("This needs the admin role.", status_code=403)
        form = await request.form()
        submitted = form.get(session.CSRF_FIELD)
        if not session.csrf_ok(request, submitted if isinstance(submitted, str) else None):
            return HTMLResponse("The form has expired: reload the page and try again.", status_code=403)
        store = await _state(request).store()
        try:
            target = await act(request, store)
        except (errors.TaskstoreError, HTTPProblem) as exc:
            return HTMLResponse(f"Refused: {type(exc).__name__}", status_code=409)
        return RedirectResponse(_root(request) + target, status_code=303)

    return view


# -- pages ----------------------------------------------------------------------------------------


async def overview(request: Request, p: Page) -> Response:
    store = await _state(request).store()
    queues = await store.list_queues()
    workers = await store.list_worker_heartbeats()
    totals = {s: sum(q.counts.get(s, 0) for q in queues) for s in State}
    charts = activity_charts(await store.activity(window=3600, bucket=60))
    ctx = {"page": p, "queues": queues, "workers": workers, "totals": totals, "charts": charts, "ago": _ago}
    name = "_overview.html" if request.headers.get("hx-request") else "overview.html"
    return templates.TemplateResponse(request, name, ctx)


async def queue_page(request: Request, p: Page) -> Response:
    store = await _state(request).store()
    name = request.path_params["name"]
    raw_state = request.query_params.get("state") or None
    wanted = State(raw_state) if raw_state in {s.value for s in State} else None
    cursor = request.query_params.get("cursor") or None
    kind = request.query_params.get("kind") or None
    if kind is not None:
        try:
            kind = check_kind(kind)
        except errors.InvalidTask:
            raise errors.NotFound(kind, "kind") from None
    info = next((q for q in await store.list_queues() if q.name == name), None)
    try:
        if wanted is not None and info is not None and not info.counts.get(wanted):
            # None in that state (the kept counts say so): a listing would walk the whole queue to find none.
            tasks: TaskPage[Task] = TaskPage(items=[])
        else:
            tasks = await store.list(
                state=wanted, queue=name, cursor=cursor, limit=PAGE_SIZE, descending=True, kind=kind
            )
    except errors.InvalidTask:
        raise errors.NotFound(name, "queue") from None
    # The kinds offered are those on this page (and the one chosen): the store keeps no list of kinds per queue.
    kinds = sorted({t.kind for t in tasks.items} | ({kind} if kind else set()))
    ctx = {
        "page": p,
        "name": name,
        "info": info,
        "tasks": tasks,
        "wanted": wanted,
        "kind": kind,
        "kinds": kinds,
        "ago": _ago,
    }
    return templates.TemplateResponse(request, "queue.html", ctx)


async def _find(store: Any, task_id: str) -> tuple[Task, bool]:
    try:
        return await store.get(task_id), False
    except errors.NotFound:
        return await store.get_archived(task_id), True


async def task_page(request: Request, p: Page) -> Response:
    store = await _state(request).store()
    task, archived = await _find(store, request.path_params["id"])
    fields = task_json(task)
    args_text = _pretty(fields["args"])
    result = fields["result"]
    value_text = _pretty(result["value"]) if result and result["value"] is not None else None
    why = await store.why(task.id) if not task.state.is_terminal else []
    ctx = {
        "page": p,
        "task": task,
        "archived": archived,
        "fields": fields,
        "args_text": args_text[:PAYLOAD_SHOWN],
        "args_cut": len(args_text) > PAYLOAD_SHOWN,
        "value_text": None if value_text is None else value_text[:PAYLOAD_SHOWN],
        "value_cut": value_text is not None and len(value_text) > PAYLOAD_SHOWN,
        "why": why,
        "status_state": TASK_TO_STATUS[task.state].value,
        "ago": _ago,
    }
    return templates.TemplateResponse(request, "task.html", ctx)


async def task_download(request: Request, p: Page) -> Response:
    store = await _state(request).store()
    task, _ = await _find(store, request.path_params["id"])
    part = request.path_params["part"]
    if part not in ("args", "result"):
        raise errors.NotFound(part, "download")
    fields = task_json(task)
    body = fields["args"] if part == "args" else (fields["result"] or {}).get("value")
    return Response(
        json.dumps(body, indent=2, ensure_ascii=False, default=str),
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="{part}.json"'},
    )


async def dead_page(request: Request, p: Page) -> Response:
    store = await _state(request).store()
    groups, scanned, complete = await failure_groups(store)
    ctx = {"page": p, "groups": groups, "scanned": scanned, "complete": complete, "ago": _ago}
    return templates.TemplateResponse(request, "dead.html", ctx)


async def workers_page(request: Request, p: Page) -> Response:
    store = await _state(request).store()
    workers = await store.list_worker_heartbeats()
    running = await store.list(state=State.CLAIMED, limit=500)
    by_worker: dict[str, list[Task]] = {}
    for t in running.items:
        if t.claim is not None:
            by_worker.setdefault(t.claim.worker_id, []).append(t)
    ctx = {"page": p, "workers": workers, "running": by_worker, "ago": _ago}
    return templates.TemplateResponse(request, "workers.html", ctx)


async def recurring_page(request: Request, p: Page) -> Response:
    store = await _state(request).store()
    ctx = {"page": p, "schedules": await store.list_recurring(), "ago": _ago}
    return templates.TemplateResponse(request, "recurring.html", ctx)


async def group_page(request: Request, p: Page) -> Response:
    store = await _state(request).store()
    group = await store.get_group(request.path_params["id"])
    if group is None:
        raise errors.NotFound(request.path_params["id"], "group")
    ctx = {"page": p, "group": group, "ago": _ago}
    return templates.TemplateResponse(request, "group.html", ctx)


async def search(request: Request, p: Page) -> Response:
    wanted = request.query_params.get("id", "").strip()
    if not wanted:
        return RedirectResponse(f"{_root(request)}/", status_code=303)
    return RedirectResponse(f"{_root(request)}/tasks/{quote(wanted, safe='')}", status_code=303)


# -- actions --------------------------------------------------------------------------------------


async def retry_task(request: Request, store: Any) -> str:
    task = await store.retry(request.path_params["id"])
    return f"/tasks/{quote(task.id, safe='')}"


async def cancel_task(request: Request, store: Any) -> str:
    task = await store.cancel(request.path_params["id"])
    return f"/tasks/{quote(task.id, safe='')}"


async def pause_queue(request: Request, store: Any) -> str:
    await store.pause_queue(request.path_params["name"])
    return f"/queues/{quote(request.path_params['name'], safe='')}"


async def resume_queue(request: Request, store: Any) -> str:
    await store.resume_queue(request.path_params["name"])
    return f"/queues/{quote(request.path_params['name'], safe='')}"


async def _group_ids(request: Request, store: Any) -> list[str]:
    """The ids of the failure group the form names, worked out again now (empty when it has gone)."""
    key = (await request.form()).get("group")
    groups, _, _ = await failure_groups(store)
    return next((group.ids for group in groups if group.key == key), [])


async def retry_group(request: Request, store: Any) -> str:
    for task_id in await _group_ids(request, store):
        try:
            await store.retry(task_id)
        except (errors.NotFound, errors.StaleVersion, errors.InvalidTask):
            continue  # retried or archived meanwhile: nothing to do for this one
    return "/dead"


async def discard_group(request: Request, store: Any) -> str:
    """The group's dead tasks to the archive now; one retried meanwhile is no longer finished and stays."""
    await store.archive_tasks(await _group_ids(request, store))
    return "/dead"


# -- login ----------------------------------------------------------------------------------------


async def login_form(request: Request) -> Response:
    csrf, fresh = session.csrf_for(request)
    nxt = request.query_params.get("next", f"{_root(request)}/")
    response = templates.TemplateResponse(request, "login.html", {"csrf": csrf, "next": nxt, "error": None})
    return _finish(request, response, csrf, fresh)


async def login_submit(request: Request) -> Response:
    form = await request.form()
    submitted = form.get(session.CSRF_FIELD)
    home = f"{_root(request)}/"
    nxt = str(form.get("next") or home)
    if not nxt.startswith("/") or nxt.startswith("//") or "\\" in nxt:
        nxt = home  # never an open redirect
    if not session.csrf_ok(request, submitted if isinstance(submitted, str) else None):
        return HTMLResponse("The form has expired: reload the page and try again.", status_code=403)
    token = str(form.get("token") or "")
    state = _state(request)
    if state.auth.open or state.auth.role_of_secret(token) is None:
        ctx = {"csrf": session.csrf_value(request), "next": nxt, "error": "That token is not valid here."}
        return templates.TemplateResponse(request, "login.html", ctx, status_code=401)
    response = RedirectResponse(nxt, status_code=303)
    session.login(request, response, token)
    return response


async def logout_submit(request: Request) -> Response:
    response = RedirectResponse(f"{_root(request)}/login", status_code=303)
    session.logout(response)
    return response


def routes(state: Any) -> list[BaseRoute]:
    return [
        Route("/", page(overview), name="overview"),
        Route("/queues/{name}", page(queue_page), name="queue"),
        Route("/tasks/{id}", page(task_page), name="task"),
        Route("/tasks/{id}/{part:str}.json", page(task_download), name="task_download"),
        Route("/dead", page(dead_page), name="dead"),
        Route("/search", page(search), name="search"),
        Route("/workers", page(workers_page), name="workers"),
        Route("/recurring", page(recurring_page), name="recurring"),
        Route("/groups/{id}", page(group_page), name="group"),
        Route("/tasks/{id}/retry", action(retry_task), methods=["POST"]),
        Route("/tasks/{id}/cancel", action(cancel_task), methods=["POST"]),
        Route("/queues/{name}/pause", action(pause_queue), methods=["POST"]),
        Route("/queues/{name}/resume", action(resume_queue), methods=["POST"]),
        Route("/dead/retry", action(retry_group), methods=["POST"]),
        Route("/dead/discard", action(discard_group), methods=["POST"]),
        Route("/login", login_form, methods=["GET"]),
        Route("/login", login_submit, methods=["POST"]),
        Route("/logout", logout_submit, methods=["POST"]),
        Mount("/static", app=StaticFiles(directory=str(HERE / "static")), name="static"),
    ]

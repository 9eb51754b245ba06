"""The forms that act: cancel and requeue a job, requeue or discard dead jobs (after a
confirmation page), cap, pause, resume and rate-limit a queue, open and close breakers, pause
and resume schedules, cancel a workflow, stop workers; and logging in and out. Each is the
same call the CLI and the JSON API make (http/flow.py's own checks included)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Awaitable, Callable
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from conveyor import bounds

from ..flow import pause_queue, set_rate_limit
from .session import COOKIE
from .web import Dashboard, Form, Refused, Visit

ActionHandler = Callable[[Dashboard, Visit, Form], Awaitable[Response]]

#: The most dead jobs one confirmation touches (as the API's bulk ``limit`` default).
MAX_BULK = 1000
BULK_ACTIONS = ("requeue", "discard")


def _job_id(visit: Visit) -> int:
    try:
        return bounds.job_id(int(visit.request.path_params["job_id"]))
    except ValueError:
        raise Refused(404, "Job not found", "no such job") from None


async def cancel(dash: Dashboard, visit: Visit, form: Form) -> Response:
    job_id = _job_id(visit)
    await run_in_threadpool(dash.app.cancel, job_id)
    return dash.redirect(visit, f"/jobs/{job_id}?done=cancelled")


async def requeue(dash: Dashboard, visit: Visit, form: Form) -> Response:
    job_id = _job_id(visit)
    reset = form.get("reset_attempts") is not None
    await run_in_threadpool(lambda: dash.app.requeue(job_id, reset_attempts=reset))
    return dash.redirect(visit, f"/jobs/{job_id}?done=requeued")


def _bulk_action(form: Form) -> str:
    action = form.get("action")
    if action not in BULK_ACTIONS:
        raise Refused(422, "Invalid value", "choose requeue or discard")
    return action


def _ids(form: Form) -> list[int]:
    try:
        return bounds.job_ids([int(given) for given in form.all("id")][: MAX_BULK + 1])
    except ValueError:
        raise Refused(422, "Invalid value", "job ids must be whole numbers") from None


async def dead_confirm(dash: Dashboard, visit: Visit, form: Form) -> Response:
    """What requeue or discard would touch, to confirm: the ids selected, or the newest
    MAX_BULK dead jobs matching the filters (the page says when there are more)."""
    action = _bulk_action(form)
    queue, task = form.get("queue"), form.get("task")
    if form.get("scope") == "all":
        found = await run_in_threadpool(
            lambda: dash.app.dead_letters(queue=queue, task=task, limit=MAX_BULK + 1)
        )
        capped = len(found) > MAX_BULK
        chosen = [job.id for job in found[:MAX_BULK]]
    else:
        chosen = _ids(form)
        capped = len(chosen) > MAX_BULK
        chosen = chosen[:MAX_BULK]
        if not chosen:
            raise Refused(422, "Nothing selected", "tick the dead jobs to act on first")
    return dash.render(
        visit,
        "dead_confirm.html",
        action=action,
        ids=chosen,
        capped=capped,
        max_bulk=MAX_BULK,
        queue=queue,
        task=task,
        everything=form.get("scope") == "all",
        reset_attempts=form.get("reset_attempts") is not None,
    )


async def dead_apply(dash: Dashboard, visit: Visit, form: Form) -> Response:
    """Requeue or discard exactly the jobs confirmed, all or none."""
    action = _bulk_action(form)
    chosen = _ids(form)
    if not chosen or len(chosen) > MAX_BULK:
        raise Refused(422, "Invalid value", f"confirm between 1 and {MAX_BULK} dead jobs")
    if action == "requeue":
        reset = form.get("reset_attempts") is not None
        jobs = await run_in_threadpool(lambda: dash.app.requeue_many(chosen, reset_attempts=reset))
        return dash.redirect(visit, f"/dead?done=bulk-requeued&count={len(jobs)}")
    discarded = await run_in_threadpool(dash.app.discard, chosen)
    return dash.redirect(visit, f"/dead?done=bulk-discarded&count={discarded}")


async def queue_limit(dash: Dashboard, visit: Visit, form: Form) -> Response:
    """Cap a queue's running jobs; a blank cap (or the remove button) removes it."""
    queue = form.get("queue")
    if queue is None:
        raise Refused(422, "Invalid value", "name the queue")
    given = None if form.get("remove") is not None else form.get("max_running")
    try:
        cap = None if given is None else int(given)
    except ValueError:
        raise Refused(422, "Invalid value", "max_running must be a whole number") from None
    await run_in_threadpool(dash.app.set_concurrency_limit, queue, cap)
    return dash.redirect(visit, "/queues?done=" + ("uncapped" if cap is None else "capped"))


def _named(form: Form, field: str) -> str:
    given = form.get(field)
    if given is None:
        raise Refused(422, "Invalid value", f"name the {field}")
    return given


def _until(form: Form) -> dt.datetime | None:
    """The form's ``until`` (a datetime-local input: ISO 8601 without offset, read as UTC)."""
    given = form.get("until")
    if given is None:
        return None
    try:
        at = dt.datetime.fromisoformat(given)
    except ValueError:
        raise Refused(422, "Invalid value", "until must be a date and time (UTC)") from None
    return at if at.tzinfo is not None else at.replace(tzinfo=dt.UTC)


async def queue_pause(dash: Dashboard, visit: Visit, form: Form) -> Response:
    """Pause a queue fleet-wide, until resumed or until ``until``."""
    queue, until = _named(form, "queue"), _until(form)
    await run_in_threadpool(pause_queue, dash.app, queue, until)
    return dash.redirect(visit, "/queues?done=paused")


async def queue_resume(dash: Dashboard, visit: Visit, form: Form) -> Response:
    await run_in_threadpool(dash.app.resume_queue, _named(form, "queue"))
    return dash.redirect(visit, "/queues?done=resumed")


async def queue_rate(dash: Dashboard, visit: Visit, form: Form) -> Response:
    """Set a queue's rate limit ("100/m"); the remove button removes it."""
    queue = _named(form, "queue")
    if form.get("remove") is not None:
        await run_in_threadpool(dash.app.set_rate_limit, queue, None)
        return dash.redirect(visit, "/queues?done=rate-removed")
    await run_in_threadpool(set_rate_limit, dash.app, queue, _named(form, "rate"))
    return dash.redirect(visit, "/queues?done=rate-set")


async def breaker_open(dash: Dashboard, visit: Visit, form: Form) -> Response:
    await run_in_threadpool(dash.app.open_breaker, _named(form, "name"))
    return dash.redirect(visit, "/breakers?done=breaker-opened")


async def breaker_close(dash: Dashboard, visit: Visit, form: Form) -> Response:
    await run_in_threadpool(dash.app.close_breaker, _named(form, "name"))
    return dash.redirect(visit, "/breakers?done=breaker-closed")


async def schedule_pause(dash: Dashboard, visit: Visit, form: Form) -> Response:
    await run_in_threadpool(dash.app.pause_schedule, _named(form, "name"))
    return dash.redirect(visit, "/schedules?done=schedule-paused")


async def schedule_resume(dash: Dashboard, visit: Visit, form: Form) -> Response:
    await run_in_threadpool(dash.app.resume_schedule, _named(form, "name"))
    return dash.redirect(visit, "/schedules?done=schedule-resumed")


async def workflow_cancel(dash: Dashboard, visit: Visit, form: Form) -> Response:
    workflow_id = visit.request.path_params["workflow_id"]
    await run_in_threadpool(dash.app.cancel_workflow, workflow_id)
    return dash.redirect(visit, f"/workflows/{quote(workflow_id)}?done=workflow-cancelled")


async def stop_workers(dash: Dashboard, visit: Visit, form: Form) -> Response:
    every = form.get("all") is not None
    ids = form.all("worker")
    if every == bool(ids):
        raise Refused(422, "Invalid value", "choose a worker, or all of them")
    await run_in_threadpool(lambda: dash.app.stop_workers(ids, every=every))
    return dash.redirect(visit, "/workers?done=stopping")


async def login_page(dash: Dashboard, visit: Visit) -> Response:
    if not dash.tokens.required:
        return dash.redirect(visit, "/")
    return dash.render(visit, "login.html", failed=False)


async def login(dash: Dashboard, visit: Visit, form: Form) -> Response:
    """Trade the API token for a session cookie (what the token may do, signed)."""
    presented = form.get("token")
    granted = None if presented is None else dash.tokens.grant(presented)
    if granted is None:
        return dash.render(visit, "login.html", 401, failed=True)
    session = dash.sessions.new(granted, time.time())
    response = RedirectResponse(f"{visit.base}/", status_code=303)
    dash.set_cookie(response, session, visit)
    return response


async def logout(dash: Dashboard, visit: Visit, form: Form) -> Response:
    response = RedirectResponse(f"{visit.base}/login", status_code=303)
    if not dash.tokens.required:
        response = RedirectResponse(f"{visit.base}/", status_code=303)
    response.delete_cookie(COOKIE, path=visit.base or "/")
    return response

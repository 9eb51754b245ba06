"""The routes on dependencies and workflows: a job's parents and children, the jobs of a
workflow, and cancelling what is left of one. Jobs get their parents and workflow at submit
(``depends_on``, ``on_parent_failure``, ``workflow_id`` of POST /api/jobs and /api/jobs/batch).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Path

from conveyor import bounds
from conveyor.app import Conveyor
from conveyor.workflows.canvas import Workflow

#: A workflow id as the library takes it (JobOptions.workflow_id).
WorkflowId = Annotated[str, Path(min_length=1, max_length=200)]


def router(app: Conveyor, write: Sequence[Any]) -> APIRouter:
    """The routes; ``write`` are the dependencies of those that change something."""
    api = APIRouter(tags=["workflows"])

    @api.get("/jobs/{job_id}/dependencies", summary="A job's parents and children")
    def get_dependencies(job_id: int) -> dict[str, Any]:
        """The parents (with their states, and results once succeeded) that the job waits
        for, and the children that wait for it."""
        return dependencies_document(app, job_id)

    @api.get("/workflows/{workflow_id}", summary="The jobs of a workflow, with their states")
    def get_workflow(workflow_id: WorkflowId) -> dict[str, Any]:
        """``state``: running while a job of it is live, then succeeded or failed."""
        return workflow_document(app.workflow(workflow_id))

    @api.post(
        dependencies=write,
        path="/workflows/{workflow_id}/cancel",
        summary="Cancel what has not ended of a workflow",
    )
    def cancel_workflow(workflow_id: WorkflowId) -> dict[str, Any]:
        """Waiting jobs are cancelled at once; the workers of running ones are asked to stop
        them (``cancel_requested``). Jobs that ended stay as they are."""
        return workflow_document(app.cancel_workflow(workflow_id))

    return api


def dependencies_document(app: Conveyor, job_id: int) -> dict[str, Any]:
    """A job's parents and children with their states: GET /api/jobs/{id}/dependencies."""
    job = app.get_job(bounds.job_id(job_id))
    found = app.dependencies(job.id)
    return {
        "id": job.id,
        "state": job.state.value,
        "pending_parents": job.pending_parents,
        "stopped_by": job.stopped_by,
        "workflow_id": job.workflow_id,
        "parents": [
            {"id": parent, "state": state.value, "result": result}
            for parent, state, result in found.parents
        ],
        "children": [{"id": child, "state": state.value} for child, state in found.children],
    }


def workflow_document(workflow: Workflow) -> dict[str, Any]:
    """What ``conveyor workflows show --json`` prints."""
    return {
        "id": workflow.id,
        "state": workflow.state,
        "counts": workflow.counts(),
        "jobs": [job.to_dict() for job in workflow.jobs],
    }

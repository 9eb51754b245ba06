"""Commands on workflows (conveyor.workflows.canvas): show every job of one, or cancel it."""

from __future__ import annotations

import click

from conveyor.workflows.canvas import Workflow

from .core import Runtime, app_option, json_option, pass_runtime
from .output import echo_json, jobs_table


@click.group()
def workflows() -> None:
    """Show or cancel a workflow (a chain, group or chord) by its id."""


def _echo(workflow: Workflow, as_json: bool) -> None:
    if as_json:
        echo_json(
            {
                "id": workflow.id,
                "state": workflow.state,
                "counts": workflow.counts(),
                "jobs": [job.to_dict() for job in workflow.jobs],
            }
        )
        return
    counts = ", ".join(f"{n} {state}" for state, n in sorted(workflow.counts().items()))
    click.echo(f"workflow {workflow.id}: {workflow.state} ({counts})")
    click.echo(jobs_table(workflow.jobs))


@workflows.command("show")
@click.argument("workflow_id", metavar="ID")
@app_option
@json_option
@pass_runtime
def show_workflow(runtime: Runtime, workflow_id: str, as_json: bool) -> None:
    """Every job of workflow ID, oldest first, with its state."""
    _echo(runtime.existing_app().workflow(workflow_id), as_json)


@workflows.command("cancel")
@click.argument("workflow_id", metavar="ID")
@app_option
@json_option
@pass_runtime
def cancel_workflow(runtime: Runtime, workflow_id: str, as_json: bool) -> None:
    """Cancel every job of workflow ID that has not ended (running ones are asked to stop)."""
    _echo(runtime.existing_app().cancel_workflow(workflow_id), as_json)

"""How the CLI shows a job's parents and children (conveyor.workflows)."""

from __future__ import annotations

from typing import Any

from conveyor.backends.base import Dependencies
from conveyor.job import Job, JobState


def links_dict(links: Dependencies) -> dict[str, Any]:
    return {
        "parents": [{"id": p, "state": s.value} for p, s, _ in links.parents],
        "children": [{"id": c, "state": s.value} for c, s in links.children],
    }


def links_lines(job: Job, links: Dependencies) -> str:
    lines: list[str] = []
    if job.workflow_id is not None:
        lines.append(f"workflow: {job.workflow_id}")
    if links.parents:
        lines.append("parents: " + ", ".join(f"{p} ({s})" for p, s, _ in links.parents))
    if job.state is JobState.BLOCKED:
        waiting = [p for p, s, _ in links.parents if not s.is_terminal]
        lines.append(
            f"blocked: waiting for {job.pending_parents} parent(s) to end: "
            + ", ".join(str(p) for p in waiting)
        )
    if job.stopped_by is not None:
        lines.append(f"ended by the failure of parent job {job.stopped_by}")
    if job.escalated_to is not None:
        lines.append(f"escalated to job {job.escalated_to}")
    if job.escalated_from is not None:
        lines.append(f"escalated from job {job.escalated_from}")
    if links.children:
        lines.append("children: " + ", ".join(f"{c} ({s})" for c, s in links.children))
    return "\n".join(lines)

"""Commands on circuit breakers: list them, open and close them by hand."""

from __future__ import annotations

import click

from conveyor.limits.breakers import BreakerStatus

from .core import Runtime, app_option, json_option, pass_runtime
from .output import cell, echo_json, table, utc

HEADERS = ("BREAKER", "STATE", "FAILURES", "OPENED", "NEXT PROBE", "TASKS")


def _probe(found: BreakerStatus) -> str:
    if found.state == "open" and found.next_probe_at is None:
        return "closed by hand"
    if found.state == "half_open":
        return "probe running"
    return "-" if found.next_probe_at is None else f"{utc(found.next_probe_at)} UTC"


def breakers_table(found: list[BreakerStatus]) -> str:
    rows = [
        (
            b.name,
            b.state,
            b.failures,
            "-" if b.opened_at is None else f"{utc(b.opened_at)} UTC",
            _probe(b),
            ", ".join(b.tasks) or "-",
        )
        for b in found
    ]
    return table(HEADERS, rows, right=("FAILURES",))


@click.group(invoke_without_command=True)
@app_option
@json_option
@click.pass_context
def breakers(ctx: click.Context, as_json: bool) -> None:
    """List the circuit breakers (the default), or open or close one by hand."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(list_breakers, as_json=as_json)


@breakers.command("list")
@app_option
@json_option
@pass_runtime
def list_breakers(runtime: Runtime, as_json: bool) -> None:
    """List every breaker the app declares or the database holds: its state, its failures
    within its window, when it opened and when its next probe may start."""
    found = runtime.existing_app().breakers()
    if as_json:
        echo_json([b.to_dict() for b in found])
    elif not found:
        click.echo("no breakers")
    else:
        click.echo(breakers_table(found))


def _changed(found: BreakerStatus, as_json: bool) -> None:
    if as_json:
        echo_json(found.to_dict())
    elif found.state == "open":
        click.echo(f"breaker {cell(found.name)}: open until closed by hand")
    else:
        click.echo(f"breaker {cell(found.name)}: closed")


@breakers.command("open")
@click.argument("name")
@app_option
@json_option
@pass_runtime
def open_breaker(runtime: Runtime, name: str, as_json: bool) -> None:
    """Open breaker NAME by hand, fleet-wide: its jobs wait (burning no attempt) and no probe
    runs until `conveyor breakers close NAME`. Workers follow within about a second."""
    _changed(runtime.existing_app().open_breaker(name), as_json)


@breakers.command("close")
@click.argument("name")
@app_option
@json_option
@pass_runtime
def close_breaker(runtime: Runtime, name: str, as_json: bool) -> None:
    """Close breaker NAME by hand: its jobs run again and its counted failures are forgotten."""
    _changed(runtime.existing_app().close_breaker(name), as_json)

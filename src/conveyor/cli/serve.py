"""``conveyor serve``: the HTTP API (conveyor.http) under uvicorn."""

from __future__ import annotations

import click

from conveyor.errors import ConfigurationError

from .core import APP_HINT, Runtime, UserError, app_option, option, pass_runtime

EXTRA_HINT = "pip install 'conveyor-jobs[server]'"
LOG_LEVELS = ("debug", "info", "warning", "error")


@click.command()
@app_option
@option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    envvar="CONVEYOR_SERVE_HOST",
    help="Address to listen on. Any but a loopback one needs CONVEYOR_API_TOKEN.",
)
@option(
    "--port",
    type=click.IntRange(min=0, max=65535),
    default=8000,
    show_default=True,
    envvar="CONVEYOR_SERVE_PORT",
)
@option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default="info",
    show_default=True,
    envvar="CONVEYOR_LOG_LEVEL",
)
@pass_runtime
def serve(runtime: Runtime, host: str, port: int, log_level: str) -> None:
    """Serve the HTTP API: submit, read and steer jobs as JSON under /api (schema at
    /api/openapi.json), Prometheus metrics at /metrics, probes at /healthz and /readyz, and
    the web dashboard at / (with a token, it asks for it once).

    With the app (--app, CONVEYOR_APP or conveyor.toml), submitted jobs are checked against
    their task and get its defaults; without, they are enqueued as given, and each response
    says so. Tokens come from the environment only (never the command line, which `ps`
    shows): CONVEYOR_API_TOKEN may do everything, CONVEYOR_API_READ_TOKEN only read. On a
    loopback address no token is needed; on any other, the server refuses to start without
    one. SIGINT/SIGTERM stop it gracefully: requests in flight finish.
    """
    try:
        import uvicorn

        from conveyor.http import LOOPBACK_HOSTS, Tokens, create_app, is_loopback
    except ImportError as exc:
        raise UserError(
            f"conveyor serve needs the server extra ({exc.name or 'fastapi'} is missing): "
            f"{EXTRA_HINT}"
        ) from None
    tokens = Tokens.from_environment()
    if not is_loopback(host) and not tokens.required:
        raise UserError(
            f"--host {host} is reachable from other machines: set CONVEYOR_API_TOKEN (a long "
            "random secret) to serve there, or serve on 127.0.0.1"
        )
    app = runtime.existing_app()
    if runtime.app_source() is None:
        click.echo(
            "conveyor: warning: no app named: jobs are enqueued without checking their "
            f"arguments against their task (name it with {APP_HINT})",
            err=True,
        )
    try:
        asgi = create_app(
            app,
            token=tokens.token,
            read_token=tokens.read_token,
            # Without a token, only this machine may call: by its loopback names alone, which
            # no other site's page can obtain by rebinding its own name to 127.0.0.1.
            hosts=None if tokens.required else [*LOOPBACK_HOSTS, host.strip("[]")],
        )
    except ConfigurationError as exc:
        raise UserError(str(exc)) from None
    # uvicorn handles SIGINT/SIGTERM: it stops accepting, lets requests in flight finish.
    uvicorn.run(asgi, host=host, port=port, log_level=log_level.lower(), lifespan="off")

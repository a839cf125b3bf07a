"""``hub serve``: this registry as a share site for other machines' ``hub install``."""

from __future__ import annotations

import os
import sys

import typer

from hub.cli.output import emit_json, status
from hub.cli.state import context
from hub.core.errors import ConfigError


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve_command(
        ctx: typer.Context,
        host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (loopback)."),
        port: int = typer.Option(8470, "--port", help="Port (0: any free port)."),
        token_env: str = typer.Option(
            None, "--token-env", help="Require the bearer token held in this variable."
        ),
        workers: int = typer.Option(
            1, "--workers", min=1, help="Processes serving requests (over one registry)."
        ),
        as_json: bool = typer.Option(
            False, "--json", help="Print the bound host, port and URL as one JSON line."
        ),
    ) -> None:
        """Serve the registry read-only over Civitai's API (and a web page at /).

        Point another machine at it with HUB_CIVITAI_URL=<url> (or [sources.civitai] url).
        The URL (with --json, its host, port and URL as one JSON line) is printed on stdout
        once the server listens."""
        from hub.serve import Bound, run

        token = None
        if token_env:
            token = os.environ.get(token_env)
            if not token:
                raise ConfigError(
                    f"--token-env {token_env}: the variable is unset or empty",
                    hint=f"export {token_env}=<a long random token>",
                )

        def ready(bound: Bound) -> None:
            if as_json:
                emit_json({"host": bound.host, "port": bound.port, "url": bound.url}, line=True)
            else:
                sys.stdout.write(bound.url + "\n")
                sys.stdout.flush()
            status(
                f"serving {context(ctx).settings.home} at {bound.url}"
                + (" (token required)" if token else "")
                + (f" with {workers} workers" if workers > 1 else "")
                + "; Ctrl-C stops"
            )

        try:
            run(context(ctx), host, port, token, ready, workers=workers)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
        except KeyboardInterrupt:
            status("stopped")

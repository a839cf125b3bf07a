"""The ``hub`` command line. The only code that prints or exits.

Importing this module loads no torch, diffusers or transformers.
"""

from __future__ import annotations

import gc
import os
import sys

import click
import typer

from hub import __version__
from hub.core.errors import EXIT_CODES, ExitCode, HubError

app = typer.Typer(
    name="hub",
    help="sd-hub: a package manager for Stable Diffusion weights.",
    epilog="Exit codes:\n\n" + "\n\n".join(f"{int(c)}: {w}" for c, w in EXIT_CODES.items()),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"sd-hub {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    config: str = typer.Option(None, "--config", help="hub.toml to read.", envvar=None),
    home: str = typer.Option(None, "--home", help="Data folder (registry and store)."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version and exit."
    ),
) -> None:
    from hub.cli.state import State

    ctx.obj = State(config=config, home=home)


def _register_commands() -> None:
    from hub.cli import (
        config_cmd,
        convert_cmd,
        dedupe_cmd,
        demo_cmd,
        export_cmd,
        family_cmd,
        generate_cmd,
        inspect_cmd,
        install_cmd,
        library_cmd,
        lock_cmd,
        merge_cmd,
        plugins_cmd,
        scan_cmd,
        serve_cmd,
        ui_cmd,
        update_cmd,
    )

    install_cmd.register(app)
    merge_cmd.register(app)
    convert_cmd.register(app)
    scan_cmd.register(app)
    library_cmd.register(app)
    generate_cmd.register(app)
    inspect_cmd.register(app)
    serve_cmd.register(app)
    lock_cmd.register(app)
    export_cmd.register(app)
    plugins_cmd.register(app)
    config_cmd.register(app)
    demo_cmd.register(app)
    ui_cmd.register(app)
    dedupe_cmd.register(app)
    family_cmd.register(app)
    update_cmd.register(app)
    builtin = {c.name or c.callback.__name__ for c in app.registered_commands}
    builtin |= {g.name for g in app.registered_groups}
    if _command_name() in builtin:
        return  # a built-in command runs without loading third-party commands
    from hub import plugins
    from hub.core.config import load_settings

    config = _option_value("--config")
    plugins.configure(load_settings(config=config, home=_option_value("--home")).plugins_disabled)
    plugins.load_plugins().hook.register_commands(app=app)


def _command_name() -> str | None:
    """The first argument that is not an option (or an option's value): the command."""
    argv, skip = sys.argv[1:], False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("--config", "--home"):
            skip = True
        elif not arg.startswith("-"):
            return arg
    return None


def _option_value(name: str) -> str | None:
    argv = sys.argv[1:]
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def main() -> None:
    """Entry point of the ``hub`` script: one ``error:`` line and an exit code on failure."""
    from hub.cli.output import error_line

    try:
        _register_commands()
        code = app(prog_name="hub", standalone_mode=False)
        sys.exit(code if isinstance(code, int) else ExitCode.OK)
    except HubError as exc:
        error_line(exc.message, exc.hint)
        if os.environ.get("HUB_DEBUG"):
            raise
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        sys.exit(_click_error(exc))
    except click.Abort:  # a prompt met Ctrl-C or the end of its input
        error_line("aborted")
        sys.exit(ExitCode.FAILED)
    except KeyboardInterrupt:
        error_line("interrupted")
        sys.exit(ExitCode.INTERRUPTED)
    except Exception as exc:  # the last guard: no traceback for users unless HUB_DEBUG
        if os.environ.get("HUB_DEBUG"):
            raise
        error_line(
            f"internal error: {type(exc).__name__}: {exc}",
            hint="run again with HUB_DEBUG=1 for the traceback, and report it",
        )
        sys.exit(ExitCode.INTERNAL)
    finally:
        # Everything alive now lives until exit: frozen, it is skipped by the interpreter's
        # last full collection, which otherwise costs ~0.15 s once sqlalchemy is loaded.
        gc.freeze()


def _click_error(exc: click.ClickException) -> int:
    """Print a click error (a usage error: an unknown option, a missing argument) as one
    ``error:`` line and a ``hint:`` line; returns the exit code."""
    from hub.cli.output import error_line

    if not isinstance(exc, click.UsageError):
        error_line(exc.format_message())
        return exc.exit_code
    command = exc.ctx.command_path if exc.ctx else "hub"
    if not isinstance(exc, click.exceptions.NoArgsIsHelpError):  # `hub` alone: help shown
        error_line(f"{command}: {exc.format_message()}", hint=f"see `{command} --help`")
    return ExitCode.USAGE

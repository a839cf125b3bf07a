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


# Every built-in command (or group) and the module of hub.cli that registers it, in the order
# ``hub --help`` lists them. A command runs with its own module imported only (start-up).
COMMAND_MODULES = {
    "import": "install_cmd",
    "install": "install_cmd",
    "merge": "merge_cmd",
    "convert": "convert_cmd",
    "scan": "scan_cmd",
    "verify": "scan_cmd",
    "list": "library_cmd",
    "search": "library_cmd",
    "show": "library_cmd",
    "tag": "library_cmd",
    "untag": "library_cmd",
    "set": "library_cmd",
    "rm": "library_cmd",
    "generate": "generate_cmd",
    "inspect": "inspect_cmd",
    "serve": "serve_cmd",
    "lock": "lock_cmd",
    "sync": "lock_cmd",
    "export": "export_cmd",
    "import-registry": "export_cmd",
    "plugins": "plugins_cmd",
    "config": "config_cmd",
    "demo": "demo_cmd",
    "ui": "ui_cmd",
    "dedupe": "dedupe_cmd",
    "fits": "family_cmd",
    "identify": "update_cmd",
    "outdated": "update_cmd",
    "update": "update_cmd",
}


def _register_commands() -> None:
    import importlib

    command = _command_name()
    wanted = [COMMAND_MODULES[command]] if command in COMMAND_MODULES else COMMAND_MODULES.values()
    for module in dict.fromkeys(wanted):
        importlib.import_module(f"hub.cli.{module}").register(app)
    if command in COMMAND_MODULES:
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

"""``hub demo``: build a demo catalog offline, serve it, and use it as a user would."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import typer

from hub.cli.output import emit_json, status
from hub.core.errors import HubError


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo_command(
        home: Path = typer.Option(
            None, "--into", help="Folder for the demo (default: a new temporary folder)."
        ),
        as_json: bool = typer.Option(
            False, "--json", help="Print paths and timings as JSON (the commands go to stderr)."
        ),
    ) -> None:
        """Build mini models offline, serve them with `hub serve`, then install, search,
        merge and generate from that server, printing each command."""
        from hub.demo import build_catalog, team_steps, user_steps
        from hub.serve import background

        started = time.perf_counter()
        transcript = sys.stderr if as_json else sys.stdout
        root = (home or Path(tempfile.mkdtemp(prefix="hub-demo-"))).resolve()
        root.mkdir(parents=True, exist_ok=True)
        user_home, team_home = root / "home", root / "team"
        catalog, outputs = root / "catalog", root / "outputs"
        status(f"building a demo catalog of mini models in {catalog} ...")
        files = build_catalog(catalog)
        built = time.perf_counter() - started
        env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
        env |= {"PYTHONWARNINGS": "ignore", "HUB_HOME": str(user_home)}
        team_env = env | {"HUB_HOME": str(team_home)}
        commands: list[dict[str, object]] = []

        def run(args: list[str], team: bool) -> None:
            shown = ["--home", str(team_home), *args] if team else args
            transcript.write(f"\n$ hub {shlex.join(shown)}\n")
            transcript.flush()
            begun = time.perf_counter()
            proc = subprocess.run(
                [sys.executable, "-m", "hub", *args],
                env=team_env if team else env,
                cwd=root,
                stdout=transcript,
                stderr=subprocess.STDOUT,
            )
            if proc.returncode:
                raise HubError(f"demo step `hub {shlex.join(args)}` exited {proc.returncode}")
            seconds = round(time.perf_counter() - begun, 2)
            commands.append({"command": f"hub {shlex.join(shown)}", "seconds": seconds})

        for step in team_steps(files):
            run(step.args, step.team)
        transcript.write(f"\n$ hub --home {team_home} serve --port 0 &\n")
        with background(team_env, root) as url:
            transcript.write(f"{url}\n\n$ export HUB_CIVITAI_URL={url}\n")
            env["HUB_CIVITAI_URL"] = url
            for step in user_steps(outputs):
                run(step.args, step.team)
        images = sorted(outputs.glob("*.png"))
        elapsed = time.perf_counter() - started
        if as_json:
            emit_json(
                {
                    "root": str(root),
                    "catalog": str(catalog),
                    "home": str(user_home),
                    "registry": str(user_home / "registry.db"),
                    "store": str(user_home / "models"),
                    "team": str(team_home),
                    "server": url,
                    "images": [str(p) for p in images],
                    "commands": commands,
                    "catalog_seconds": round(built, 2),
                    "seconds": round(elapsed, 2),
                }
            )
        else:
            sys.stdout.write(
                f"\nimages: {', '.join(str(p) for p in images)}"
                f"\nregistry: {user_home / 'registry.db'}\nstore: {user_home / 'models'}"
                f"\nteam collection: {team_home} (served with `hub --home {team_home} serve`)"
                f"\n(run with HUB_HOME={user_home} to explore)\n"
            )
        status(f"demo finished in {elapsed:.0f}s")

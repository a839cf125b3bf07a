"""``hub demo``: build a demo catalog offline and run sd-hub's commands on it."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import typer

from hub.cli.output import status


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo_command(
        home: Path = typer.Option(
            None, "--into", help="Folder for the demo's home (default: a new temporary folder)."
        ),
    ) -> None:
        """Build a catalog of mini models offline and run sd-hub's commands on it."""
        from hub.demo import build_catalog, demo_steps

        root = home or Path(tempfile.mkdtemp(prefix="hub-demo-"))
        root.mkdir(parents=True, exist_ok=True)
        hub_home, catalog = root / "home", root / "catalog"
        status(f"building a demo catalog of mini models in {catalog} ...")
        files = build_catalog(catalog)
        env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
        env["HUB_HOME"] = str(hub_home)
        env["PYTHONWARNINGS"] = "ignore"
        for args in demo_steps(catalog, files):
            sys.stdout.write(f"\n$ hub {shlex.join(args)}\n")
            sys.stdout.flush()
            proc = subprocess.run(
                [sys.executable, "-m", "hub", *args],
                env=env,
                cwd=root,
                stdout=sys.stdout,
                stderr=subprocess.STDOUT,
            )
            if proc.returncode not in (0,):
                status(f"step failed with exit code {proc.returncode}")
                raise typer.Exit(proc.returncode)
        sys.stdout.write(
            f"\nregistry: {hub_home / 'registry.db'}\nstore: {hub_home / 'models'}"
            f"\ncatalog: {catalog}\n(run with HUB_HOME={hub_home} to explore)\n"
        )

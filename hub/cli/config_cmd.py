"""``hub config``: the settings in force."""

from __future__ import annotations

import typer

from hub.cli.output import emit_json, out


def register(app: typer.Typer) -> None:
    @app.command("config")
    def config_command(
        ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")
    ) -> None:
        """Show the settings in force; tokens only as set or unset."""
        from hub.cli.state import context
        from hub.core.config import masked_url

        s = context(ctx).settings
        rows = {
            "config file": str(s.config_path) if s.config_path else None,
            "home": str(s.home),
            "database": masked_url(s.db_url),
            "civitai url": s.civitai_url,
            "huggingface endpoint": s.hf_endpoint,
            "civitai token": "set" if s.civitai_token else "unset",
            "hf token": "set" if s.hf_token else "unset",
            "disabled plugins": sorted(s.plugins_disabled),
            "debug": s.debug,
        }
        if as_json:
            emit_json(rows)
            return
        for key, value in rows.items():
            out().print(f"{key:>21}: {value}", markup=False)

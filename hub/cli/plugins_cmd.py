"""``hub plugins``: what is loaded, with versions, hooks and what each plugin provides."""

from __future__ import annotations

import typer

from hub.cli.output import emit_json, out


def register(app: typer.Typer) -> None:
    @app.command("plugins")
    def plugins_command(
        ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")
    ) -> None:
        """List loaded plugins, their versions, the hooks they implement and what they provide."""
        from hub.cli.state import context
        from hub.plugins import plugin_info

        context(ctx).load_plugins()
        rows = plugin_info()
        if as_json:
            emit_json(rows)
            return
        from rich.table import Table

        table = Table(box=None, header_style="bold")
        for col in ("plugin", "package", "version", "hooks", "provides"):
            table.add_column(col)
        for r in rows:
            table.add_row(
                r["name"] + ("" if not r["builtin"] else " (built-in)"),
                r["package"],
                r["version"],
                ", ".join(r["hooks"]),
                ", ".join(r["provides"]),
            )
        out().print(table)

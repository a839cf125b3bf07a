"""hub-ext: a third-party sd-hub plugin package, one module per extension."""

from __future__ import annotations

import json
import os


def mark(event: str, **fields: object) -> None:
    """Append one JSON line to the file ``HUB_EXT_LOG`` names (the tests read it)."""
    path = os.environ.get("HUB_EXT_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as log:
            log.write(json.dumps({"event": event, **fields}) + "\n")

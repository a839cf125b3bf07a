"""A merge method with an option of its own: ``clamp``, a weighted sum whose result is
clipped to ``[-limit, limit]`` (``hub merge A --with B --method clamp --option limit=0.05``)."""

from __future__ import annotations

from typing import Any

import hub
from hub.plugins.merging import MergeMethod, MergeOption

LIMIT = MergeOption("limit", float, 1.0, "largest magnitude a merged weight may have")


def clamped_sum(t: list[Any], alpha: float, options: dict[str, Any], key: str) -> Any:
    limit = options["limit"]
    return ((1 - alpha) * t[0] + alpha * t[1]).clamp(-limit, limit)


@hub.hookimpl
def register_merge_methods(register):
    register(
        "clamp",
        MergeMethod(
            "clamp", (2, 2), "Clamped sum", clamped_sum, elementwise=True, options=(LIMIT,)
        ),
    )

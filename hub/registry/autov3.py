"""AutoV3 on demand: checkpoints and VAEs are registered without it (it is a second SHA-256
over nearly the whole file, which only add-ons need in the pass); whatever asks for it (a ref
by an AutoV3 prefix, ``Lora hashes``, a by-hash lookup) computes and stores it here."""

from __future__ import annotations

from collections.abc import Iterable

from hub.registry import ondemand
from hub.registry.db import Database


def fill(
    db: Database, ids: Iterable[int] | None = None, kinds: Iterable[str] | None = None
) -> dict[int, str]:
    """Compute and store the AutoV3 of the registered safetensors files that lack it (only
    ``ids``, only ``kinds`` when given); returns id -> AutoV3 of those filled
    (:func:`hub.registry.ondemand.fill`)."""
    return ondemand.fill(db, "autov3", ids, kinds)

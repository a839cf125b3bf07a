"""What a family table is: the ``register_families`` hook's value (hub/families.py uses them)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class FamilyTable:
    """What one plugin knows about families."""

    labels: dict[str, str] = field(default_factory=dict)  # family label -> sd-hub base
    # model family -> add-on families it takes besides its own
    accepts: dict[str, tuple[str, ...]] = field(default_factory=dict)
    known_checkpoints: dict[str, str] = field(default_factory=dict)  # SHA-256 -> family
    kohya_versions: dict[str, str] = field(default_factory=dict)  # ss_base_model_version
    modelspec_architectures: dict[str, str] = field(default_factory=dict)  # before any "/"

"""Applying adapters to weights: a compatibility report first, then patches that can be
undone exactly (the originals are kept, not recomputed)."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from adapters.fp8 import upcast
from adapters.lora import (
    Adapter,
    AdapterError,
    Module,
    _flat,
    _plain_lora,
    alpha_scale,
    apply,
    bias_module,
    delta,
    plain_lora_fits,
)

Resolver = Callable[[str], tuple[str, tuple[int, int] | None] | None]


@dataclass(frozen=True)
class Change:
    """One module's change to (part of) one weight, or with ``bias`` to its bias (``diff_b``),
    at a strength."""

    module: Module
    strength: float
    rows: tuple[int, int] | None = None
    bias: bool = False


@dataclass
class Report:
    """How an adapter fits a model: matched modules, the biases they change, unmatched
    modules, shape mismatches."""

    name: str
    matched: dict[str, tuple[str, tuple[int, int] | None]] = field(default_factory=dict)
    biases: dict[str, tuple[str, tuple[int, int] | None]] = field(default_factory=dict)
    unmatched: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.matched) and not self.mismatched

    def summary(self) -> str:
        text = (
            f"{self.name}: {len(self.matched)} modules match, {len(self.unmatched)} have no "
            f"target, {len(self.mismatched)} do not fit"
        )
        if self.biases:
            text += f"; bias changes (diff_b): {len(self.biases)}"
        if self.mismatched:
            text += f" (e.g. {self.mismatched[0][0]}: {self.mismatched[0][1]})"
        elif self.unmatched and not self.matched:
            text += f" (e.g. {self.unmatched[0]})"
        return text


def report(
    name: str, adapter: Adapter, shapes: Mapping[str, tuple[int, ...]], resolve: Resolver
) -> Report:
    """Check every module against the model's weight shapes, computing each delta once on a
    zero weight of the target's shape (adapters are small; this is the exact test)."""
    out = Report(name)
    for module_name, mod in adapter.modules.items():
        target = resolve(module_name)
        if target is None or target[0] not in shapes:
            out.unmatched.append(module_name)
            continue
        key, rows = target
        shape = list(shapes[key])
        if rows is not None:
            shape[0] = rows[1] - rows[0]
        try:
            _check_fit(mod, shape)
            bias = _bias_target(mod, key, rows, shapes)
        except (AdapterError, RuntimeError) as exc:
            out.mismatched.append((module_name, str(exc).split(": ", 1)[-1][:200]))
            continue
        out.matched[module_name] = target
        if bias is not None:
            out.biases[module_name] = bias
    return out


def _bias_target(
    mod: Module, key: str, rows: tuple[int, int] | None, shapes: Mapping[str, tuple[int, ...]]
) -> tuple[str, tuple[int, int] | None] | None:
    """Where a module's ``diff_b`` lands (the bias beside ``key``, same rows), None without
    one; raises when the model has no such bias or its shape differs."""
    if not mod.has("diff_b"):
        return None
    bias_key = key.removesuffix("weight") + "bias"  # x.weight -> x.bias, in_proj_weight too
    if bias_key not in shapes:
        raise AdapterError(f"{mod.name}: diff_b has no bias to change ({bias_key} is absent)")
    shape = list(shapes[bias_key])
    if rows is not None:
        shape[0] = rows[1] - rows[0]
    diff_b = mod.tensors["diff_b"]
    if list(diff_b.shape) != shape:
        raise AdapterError(
            f"{mod.name}: diff_b {list(diff_b.shape)} does not fit the bias {bias_key} {shape}"
        )
    return bias_key, rows


def _check_fit(mod: Module, shape: list[int]) -> None:
    """A plain LoRA fits by its shapes; any other module's delta is computed on the meta
    device (shapes only, no arithmetic), or on real tensors for an operation the meta device
    lacks."""
    fits = plain_lora_fits(mod, shape)
    if fits is not None:
        if not fits:
            up, down = mod.tensors["lora_up.weight"], mod.tensors["lora_down.weight"]
            raise AdapterError(
                f"{mod.name}: lora up {list(up.shape)} and down {list(down.shape)} do not fit "
                f"a weight of shape {shape}"
            )
        return
    meta = Module(
        mod.name,
        mod.algo,
        {
            k: v.to("meta")
            for k, v in mod.tensors.items()
            if k not in ("alpha", "scale", "on_input")
        },
    )
    meta.tensors |= {k: v for k, v in mod.tensors.items() if k in ("alpha", "scale", "on_input")}
    try:
        delta(meta, torch.zeros(shape, device="meta"))
    except NotImplementedError:
        delta(mod, torch.zeros(shape))


def plan(reports: list[tuple[Report, Adapter, float, float]]) -> dict[str, list[Change]]:
    """weight key -> the changes to make, from each adapter's report and its text-encoder
    and UNet strengths."""
    changes: dict[str, list[Change]] = {}
    for rep, adapter, te, unet in reports:
        for module_name, (key, rows) in rep.matched.items():
            mod = adapter.modules[module_name]
            strength = te if mod.is_text else unet
            changes.setdefault(key, []).append(Change(mod, strength, rows))
            if module_name in rep.biases:
                bias_key, bias_rows = rep.biases[module_name]
                changes.setdefault(bias_key, []).append(Change(mod, strength, bias_rows, True))
    return changes


def patched(weight: torch.Tensor, changes: list[Change]) -> torch.Tensor:
    """A new tensor: ``weight`` (or bias) with the changes applied (slices for fused
    projections)."""
    whole = [_part(c) for c in changes if c.rows is None]
    out = apply(weight, whole) if whole else weight.clone()
    for c in changes:
        if c.rows is not None:
            lo, hi = c.rows
            out[lo:hi] = apply(out[lo:hi], [_part(c)])
    return out


CHUNK_ELEMENTS = 1 << 20  # row chunks of a streamed weight: a few MiB stay in the CPU's caches
CHUNK_WORKERS = 2  # chunks patched at once (torch and numpy release the GIL)


def patched_chunks(
    read_rows: Callable[[int, int], torch.Tensor],
    shape: tuple[int, ...],
    changes: list[Change],
    dtype: torch.dtype | None = None,
) -> Iterator[torch.Tensor]:
    """The patched weight of ``shape`` as row chunks, in order, reading the original's rows
    with ``read_rows(lo, hi)`` (called from worker threads): memory stays a few chunks,
    whatever the weight's size. Plain LoRAs (whole or on row slices) are added chunk by
    chunk as :func:`patched` adds them (same order, same fused multiply-adds); any other
    change takes the whole weight at once. The math is float32; the chunks are rounded to
    ``dtype`` (default: the original's)."""
    rows = shape[0] if shape else 1
    if not shape or any(c.bias or not _plain_lora(c.module, len(shape)) for c in changes):
        raw = read_rows(0, rows)
        yield patched(upcast(raw), changes).to(dtype or raw.dtype)
        return
    order = [c for c in changes if c.rows is None] + [c for c in changes if c.rows is not None]
    factors = []
    for c in order:
        if c.strength:
            up, down = _flat(c.module.t("lora_up.weight")), _flat(c.module.t("lora_down.weight"))
            lo, hi = c.rows or (0, rows)
            factors.append((lo, hi, up, down, c.strength * alpha_scale(c.module, down.shape[0])))
    step = max(1, CHUNK_ELEMENTS // max(1, math.prod(shape[1:])))

    def chunk(a: int) -> torch.Tensor:
        b = min(rows, a + step)
        raw = read_rows(a, b)
        w = upcast(raw)
        flat = w.view(b - a, -1)
        for lo, hi, up, down, scale in factors:
            s, e = max(a, lo), min(b, hi)
            if s < e:
                flat[s - a : e - a].addmm_(up[s - lo : e - lo], down, alpha=scale)
        return w.to(dtype or raw.dtype)

    with ThreadPoolExecutor(CHUNK_WORKERS) as pool:
        pending: deque[Future[torch.Tensor]] = deque()
        for a in range(0, rows, step):
            pending.append(pool.submit(chunk, a))
            if len(pending) > CHUNK_WORKERS:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _part(change: Change) -> tuple[Module, float]:
    return (bias_module(change.module) if change.bias else change.module), change.strength


def _write_patched(target: torch.Tensor, original: torch.Tensor, changes: list[Change]) -> None:
    """``target`` := ``original`` with the changes applied. A float32 weight whose changes
    are all plain LoRAs on the whole weight gets them in place, with one matrix product of
    their ups (scaled by strength and alpha) side by side and their downs stacked: no
    temporary weight, one pass over its memory. Any other goes through :func:`patched`."""
    if (
        target.dtype != torch.float32
        or not target.is_contiguous()
        or any(
            c.bias or c.rows is not None or not _plain_lora(c.module, target.dim()) for c in changes
        )
    ):
        target.copy_(patched(original, changes))
        return
    target.copy_(original)
    factors = _stacked_factors(changes, target.device)
    if factors is not None:
        target.view(target.shape[0], -1).addmm_(*factors)


def _stacked_factors(
    changes: list[Change], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Plain LoRA changes as one product ``ups @ downs`` in float32: the ups side by side,
    each scaled by its strength and alpha, the downs stacked, converted as they are copied
    in (no temporary per module); a module at strength 0, or whose up is all zeros (an
    untrained PEFT module, say), is left out; None when none is left."""
    live = [c for c in changes if c.strength and _nonzero(c.module.tensors["lora_up.weight"])]
    if not live:
        return None
    downs_in = [_flat(c.module.tensors["lora_down.weight"]) for c in live]
    rank = sum(d.shape[0] for d in downs_in)
    rows = live[0].module.tensors["lora_up.weight"].shape[0]
    ups = torch.empty(rows, rank, dtype=torch.float32, device=device)
    downs = torch.empty(rank, downs_in[0].shape[1], dtype=torch.float32, device=device)
    at = 0
    for c, down in zip(live, downs_in, strict=True):
        r = down.shape[0]
        downs[at : at + r].copy_(down)
        ups[:, at : at + r].copy_(_flat(c.module.tensors["lora_up.weight"]))
        ups[:, at : at + r].mul_(c.strength * alpha_scale(c.module, r))
        at += r
    return ups, downs


def _nonzero(t: torch.Tensor) -> bool:
    """Whether ``t`` holds anything but zeros (a NaN counts): torch's min/max pass, which
    is several times faster than ``any()`` on float tensors."""
    if not t.numel():
        return False
    lo, hi = torch.aminmax(
        t if t.dtype in (torch.float16, torch.bfloat16, torch.float32) else upcast(t)
    )
    return bool(lo != 0 or hi != 0)


def _signature(
    changes: list[Change],
) -> tuple[tuple[int, float, tuple[int, int] | None, bool], ...]:
    """What makes two change lists the same: the module objects (by identity), strengths,
    rows and whether the bias is meant. The PatchSet keeps the changes it applied, so an id
    is never reused meanwhile."""
    return tuple((id(c.module), c.strength, c.rows, c.bias) for c in changes)


class PatchSet:
    """Changes applied to tensors in place (model parameters, say), kept up to date
    incrementally: :meth:`update` restores weights no longer changed, patches new or different
    ones from their originals and leaves the rest alone; :meth:`restore` puts every original
    back bit for bit."""

    def __init__(self, tensors: Mapping[str, torch.Tensor]) -> None:
        self.tensors = tensors
        self._saved: dict[str, torch.Tensor] = {}
        self._applied: dict[str, tuple[tuple, list[Change]]] = {}  # key -> (signature, changes)
        self._writes: dict[str, int] = {}  # key -> how many times it was written

    def writes(self, prefixes: tuple[str, ...]) -> tuple[tuple[str, int], ...]:
        """How many times each tensor whose key starts with one of ``prefixes`` was written:
        equal answers mean those tensors hold the same values."""
        return tuple(sorted((k, n) for k, n in self._writes.items() if k.startswith(prefixes)))

    @property
    def keys(self) -> set[str]:
        """The weight keys currently patched."""
        return set(self._applied)

    def update(self, changes: Mapping[str, list[Change]]) -> int:
        """Make the tensors equal their originals with ``changes`` applied; returns how many
        weights were written."""
        written = 0
        with torch.no_grad():
            for key in [k for k in self._applied if k not in changes]:
                self.tensors[key].copy_(self._saved.pop(key))
                del self._applied[key]
                self._writes[key] = self._writes.get(key, 0) + 1
                written += 1
            for key, todo in changes.items():
                signature = _signature(todo)
                if key in self._applied and self._applied[key][0] == signature:
                    continue
                target = self.tensors[key]
                if key not in self._saved:
                    self._saved[key] = target.detach().clone()
                _write_patched(target, self._saved[key], todo)
                self._applied[key] = (signature, list(todo))
                self._writes[key] = self._writes.get(key, 0) + 1
                written += 1
        return written

    def restore(self) -> None:
        """Every patched tensor back to its original."""
        self.update({})


@contextmanager
def patch_tensors(
    tensors: Mapping[str, torch.Tensor], changes: Mapping[str, list[Change]]
) -> Iterator[None]:
    """Apply changes to tensors in place and restore the originals bit for bit on exit."""
    patches = PatchSet(tensors)
    try:
        patches.update(changes)
        yield
    finally:
        patches.restore()

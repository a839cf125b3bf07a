"""Image reader for ComfyUI: the ``prompt`` chunk (API graph, what ran), else the ``workflow``
chunk (editor graph) turned into the same shape (IMAGE_METADATA.md §4).

From the sampler the reader walks links back: the model input through LoRA loaders (any
order, model-only ones too, rgthree's Power Lora Loader) to the checkpoint or UNet loader;
the conditioning to the text, through any node in between; the text encoder's CLIP input
through ``CLIPSetLastLayer`` (``stop_at_clip_layer: -N`` = clip skip N) and LoRA loaders.
Every walk keeps the nodes it has seen, so a cycle ends it with a note.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from hub import hookimpl
from hub.plugins.imaging import Declined, ImageMetadata, ImageRecord, Resource, number

Graph = dict[str, dict[str, Any]]
CONTROL = "control_after_generate"
# Widget inputs in declaration order, for reading the editor graph (``widgets_values``).
WIDGETS: dict[str, list[str]] = {
    "CheckpointLoaderSimple": ["ckpt_name"],
    "CheckpointLoader": ["config_name", "ckpt_name"],
    "UNETLoader": ["unet_name", "weight_dtype"],
    "LoraLoader": ["lora_name", "strength_model", "strength_clip"],
    "LoraLoaderModelOnly": ["lora_name", "strength_model"],
    "VAELoader": ["vae_name"],
    "CLIPSetLastLayer": ["stop_at_clip_layer"],
    "CLIPTextEncode": ["text"],
    "EmptyLatentImage": ["width", "height", "batch_size"],
    "EmptySD3LatentImage": ["width", "height", "batch_size"],
    "KSampler": ["seed", CONTROL, "steps", "cfg", "sampler_name", "scheduler", "denoise"],
    "KSamplerAdvanced": [
        "add_noise",
        "noise_seed",
        CONTROL,
        "steps",
        "cfg",
        "sampler_name",
        "scheduler",
        "start_at_step",
        "end_at_step",
        "return_with_leftover_noise",
    ],
    "FluxGuidance": ["guidance"],
    "PrimitiveNode": ["value", CONTROL],
}
SAMPLERS = ("KSampler", "KSamplerAdvanced")
CHECKPOINT_NAMES = ("ckpt_name", "unet_name")
LORA_LOADERS = ("LoraLoader", "LoraLoaderModelOnly")
MAX_DEPTH = 200  # links followed in one walk; a longer chain is damaged or hostile


def _is_link(value: Any) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 2
        and isinstance(value[0], str | int)
        and isinstance(value[1], int)
    )


class _Walker:
    """Follows links in an API graph, noting cycles and dangling links once each."""

    def __init__(self, graph: Graph, notes: list[str]) -> None:
        self.graph = graph
        self.notes = notes

    def chain(self, link: Any, via: tuple[str, ...]) -> Iterator[tuple[str, dict[str, Any]]]:
        """(id, node) from ``link`` back through each node's first input named in ``via``."""
        seen: set[str] = set()
        while _is_link(link):
            node_id = str(link[0])
            if node_id in seen:
                self.notes.append(f"the graph loops back to node {node_id}: walk stopped")
                return
            if len(seen) >= MAX_DEPTH:
                self.notes.append(f"a chain of over {MAX_DEPTH} nodes: walk stopped")
                return
            seen.add(node_id)
            node = self.graph.get(node_id)
            if not isinstance(node, dict):
                self.notes.append(f"a link points to node {node_id}, which is missing")
                return
            yield node_id, node
            inputs = _inputs(node)
            link = next((inputs[name] for name in via if _is_link(inputs.get(name))), None)

    def literal(self, value: Any) -> Any:
        """A widget value, following links to primitive nodes."""
        for _, node in self.chain(value, ("value",)):
            inputs = _inputs(node)
            found = next((v for v in inputs.values() if not _is_link(v)), None)
            if found is not None:
                return found
        return None if _is_link(value) else value

    def text(self, link: Any, role: str) -> str | None:
        """The prompt text behind a conditioning link, through any nodes in between."""
        via = (role, "conditioning", "conditioning_to", "conditioning_1", "positive")
        for _, node in self.chain(link, via):
            inputs = _inputs(node)
            for name in ("text", "text_g", "prompt"):
                if name in inputs:
                    value = self.literal(inputs[name])
                    return value if isinstance(value, str) else None
            if isinstance(inputs.get(role), str):  # Efficient Loader: the text itself
                return inputs[role]
        return None


def _inputs(node: dict[str, Any]) -> dict[str, Any]:
    inputs = node.get("inputs")
    return inputs if isinstance(inputs, dict) else {}


def _power_loras(inputs: dict[str, Any]) -> list[Resource]:
    """rgthree's Power Lora Loader: ``lora_N`` = ``{"on", "lora", "strength", "strengthTwo"}``."""
    out = []
    for key, value in inputs.items():
        if key.lower().startswith("lora_") and isinstance(value, dict) and value.get("on"):
            strength = number(value.get("strength"), float)
            two = number(value.get("strengthTwo"), float)
            name = str(value.get("lora") or "") or None
            out.append(
                Resource("lora", name, {}, None, strength, two if two is not None else strength)
            )
    return out


def _stack_entries(walk: _Walker, ctype: Any, inputs: dict[str, Any]) -> list[Resource]:
    """The LoRAs one stack node lists: Efficiency Nodes' ``LoRA Stacker`` (the first
    ``lora_count`` slots; ``simple`` mode: one weight for both) or Comfyroll's
    ``CR LoRA Stack`` (three slots, each switched ``On``/``Off``)."""
    out = []
    if ctype == "LoRA Stacker":
        count = number(walk.literal(inputs.get("lora_count")), int) or 0
        advanced = walk.literal(inputs.get("input_mode")) == "advanced"
        keys = [
            (f"lora_name_{i}", f"model_str_{i}", f"clip_str_{i}")
            if advanced
            else (f"lora_name_{i}", f"lora_wt_{i}", f"lora_wt_{i}")
            for i in range(1, min(count, 50) + 1)
        ]
    elif ctype == "CR LoRA Stack":
        keys = [
            (f"lora_name_{i}", f"model_weight_{i}", f"clip_weight_{i}")
            for i in (1, 2, 3)
            if walk.literal(inputs.get(f"switch_{i}")) == "On"
        ]
    else:
        return out
    for name_key, model_key, clip_key in keys:
        name = walk.literal(inputs.get(name_key))
        if isinstance(name, str) and name not in ("", "None"):
            model = number(walk.literal(inputs.get(model_key)), float)
            clip = number(walk.literal(inputs.get(clip_key)), float)
            out.append(Resource("lora", name, strength=model, clip_strength=clip))
    return out


def _stacked(walk: _Walker, node_id: str, ctype: Any, inputs: dict[str, Any]) -> list[Resource]:
    """The LoRAs a stack consumer applies, in order: Efficient Loader's own ``lora_name``,
    then its ``lora_stack`` chain (each stack node's LoRAs before those it is fed)."""
    out = []
    own = walk.literal(inputs.get("lora_name"))
    if ctype == "Efficient Loader" and isinstance(own, str) and own != "None":
        model = number(walk.literal(inputs.get("lora_model_strength")), float)
        clip = number(walk.literal(inputs.get("lora_clip_strength")), float)
        out.append(Resource("lora", own, strength=model, clip_strength=clip))
        out[0].origin = f"node {node_id} {ctype}"
    for stack_id, stack in walk.chain(inputs.get("lora_stack"), ("lora_stack",)):
        entries = _stack_entries(walk, stack.get("class_type"), _inputs(stack))
        for res in entries:
            res.origin = f"node {stack_id} {stack.get('class_type')} via node {node_id}"
        out.extend(entries)
    return out


def _efficient_loader(
    walk: _Walker, node_id: str, inputs: dict[str, Any], rec: ImageRecord
) -> None:
    """Efficient Loader's own VAE (unless ``Baked VAE``) and clip skip (``-N`` = N)."""
    vae = walk.literal(inputs.get("vae_name"))
    if isinstance(vae, str) and vae not in ("Baked VAE", "None"):
        rec.resources.append(Resource("vae", vae, origin=f"node {node_id} Efficient Loader"))
    skip = number(walk.literal(inputs.get("clip_skip")), int)
    rec.clip_skip = -skip if skip is not None and skip < 0 else rec.clip_skip


def _model_chain(walk: _Walker, link: Any, rec: ImageRecord) -> dict[str, Resource]:
    """LoRAs (by node id, outermost first) and the checkpoint behind a sampler's model."""
    loras: dict[str, Resource] = {}
    for node_id, node in walk.chain(link, ("model",)):
        ctype, inputs = node.get("class_type"), _inputs(node)
        if ctype in LORA_LOADERS:
            loras[node_id] = Resource(
                "lora",
                str(walk.literal(inputs.get("lora_name")) or "") or None,
                strength=number(walk.literal(inputs.get("strength_model")), float),
                clip_strength=(
                    number(walk.literal(inputs.get("strength_clip")), float)
                    if ctype == "LoraLoader"
                    else None
                ),
                origin=f"node {node_id} {ctype}",
            )
        elif ctype == "Power Lora Loader (rgthree)":
            # reversed here: the chain is collected outermost first and reversed at the end
            for n, res in reversed(list(enumerate(_power_loras(inputs)))):
                res.origin = f"node {node_id} {ctype}"
                loras[f"{node_id}.{n}"] = res
        elif ctype in ("Efficient Loader", "CR Apply LoRA Stack"):
            for n, res in reversed(list(enumerate(_stacked(walk, node_id, ctype, inputs)))):
                loras[f"{node_id}.{n}"] = res
            if ctype == "Efficient Loader":
                _efficient_loader(walk, node_id, inputs, rec)
        name = next((inputs[k] for k in CHECKPOINT_NAMES if k in inputs), None)
        if name is not None:
            rec.resources.append(
                Resource("checkpoint", str(walk.literal(name)), origin=f"node {node_id} {ctype}")
            )
    return loras


def _clip_chain(walk: _Walker, link: Any, loras: dict[str, Resource], rec: ImageRecord) -> None:
    """Clip skip and clip-only LoRA loaders behind a text encoder's CLIP input."""
    for node_id, node in walk.chain(link, ("clip",)):
        ctype, inputs = node.get("class_type"), _inputs(node)
        if ctype == "CLIPSetLastLayer" and rec.clip_skip is None:
            layer = number(walk.literal(inputs.get("stop_at_clip_layer")), int)
            rec.clip_skip = -layer if layer is not None and layer < 0 else None
        elif ctype == "LoraLoader" and node_id not in loras:
            loras[node_id] = Resource(
                "lora",
                str(walk.literal(inputs.get("lora_name")) or "") or None,
                strength=0.0,
                clip_strength=number(walk.literal(inputs.get("strength_clip")), float),
                origin=f"node {node_id} {ctype}",
            )


def _encoder_clip(walk: _Walker, link: Any) -> Any:
    """The CLIP link of the text encoder behind a conditioning link."""
    for _, node in walk.chain(link, ("conditioning", "conditioning_to", "positive")):
        if _is_link(_inputs(node).get("clip")):
            return _inputs(node)["clip"]
    return None


def _size(walk: _Walker, link: Any, rec: ImageRecord) -> None:
    for _, node in walk.chain(link, ("latent_image", "samples", "latent")):
        inputs = _inputs(node)
        for w, h in (("width", "height"), ("empty_latent_width", "empty_latent_height")):
            if w in inputs and h in inputs:  # EmptyLatentImage; Efficient Loader
                rec.width = number(walk.literal(inputs[w]), int)
                rec.height = number(walk.literal(inputs[h]), int)
                return


def _pick_sampler(graph: Graph) -> tuple[str, dict[str, Any]] | None:
    """The first-pass sampler: its latent does not come from another sampler."""
    samplers = [(k, v) for k, v in graph.items() if v.get("class_type") in SAMPLERS]
    ids = {k for k, _ in samplers}
    for node_id, node in sorted(samplers, key=lambda kv: (len(kv[0]), kv[0])):
        latent = _inputs(node).get("latent_image")
        if not (_is_link(latent) and str(latent[0]) in ids):
            return node_id, node
    return samplers[0] if samplers else None


def read_graph(graph: Graph, notes: list[str]) -> ImageRecord:
    """The record of an API graph (node id -> class_type and inputs)."""
    rec = ImageRecord("comfyui", "ComfyUI", notes=notes, score=60)
    walk = _Walker(graph, rec.notes)
    picked = _pick_sampler(graph)
    loras: dict[str, Resource] = {}
    if picked is None:
        rec.notes.append("no KSampler or KSamplerAdvanced node: settings unknown")
    else:
        node_id, node = picked
        inputs = _inputs(node)
        rec.seed = number(walk.literal(inputs.get("seed", inputs.get("noise_seed"))), int)
        rec.steps = number(walk.literal(inputs.get("steps")), int)
        rec.cfg = number(walk.literal(inputs.get("cfg")), float)
        rec.sampler = _str(walk.literal(inputs.get("sampler_name")))
        rec.scheduler = _str(walk.literal(inputs.get("scheduler")))
        denoise = number(walk.literal(inputs.get("denoise")), float)
        if denoise is not None and denoise != 1.0:
            rec.extra["denoise"] = denoise
        rec.prompt = walk.text(inputs.get("positive"), "positive")
        rec.negative = walk.text(inputs.get("negative"), "negative")
        loras = _model_chain(walk, inputs.get("model"), rec)
        _clip_chain(walk, _encoder_clip(walk, inputs.get("positive")), loras, rec)
        _size(walk, inputs.get("latent_image"), rec)
    rec.resources.extend(reversed(list(loras.values())))
    for node_id, node in graph.items():
        ctype, inputs = node.get("class_type"), _inputs(node)
        if ctype == "VAELoader":
            name = _str(walk.literal(inputs.get("vae_name")))
            rec.resources.append(Resource("vae", name, origin=f"node {node_id} {ctype}"))
        elif ctype == "FluxGuidance":
            rec.extra["guidance"] = number(walk.literal(inputs.get("guidance")), float)
        elif ctype in SAMPLERS and picked and node_id != picked[0]:
            rec.extra.setdefault("other samplers", []).append(node_id)
    return rec


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _widgets(ctype: str, values: list[Any]) -> dict[str, Any]:
    """Widget values by input name; the control entry after a seed (``"randomize"``, or
    ``true`` in old files) is skipped when present."""
    out: dict[str, Any] = {}
    pending = list(values)
    for name in WIDGETS.get(ctype, []):
        if not pending:
            break
        if name != CONTROL:
            out[name] = pending.pop(0)
        elif isinstance(pending[0], str | bool):
            pending.pop(0)
    return out


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _links(workflow: dict[str, Any]) -> dict[int | str, list[Any]]:
    """Link id -> ``[source node id, output slot]``, from ``[id, from, slot, to, slot, type]``
    rows or ``{"id", "origin_id", "origin_slot"}`` objects."""
    links: dict[int | str, list[Any]] = {}
    for link in _list(workflow.get("links")):
        if isinstance(link, list) and len(link) >= 5:
            key, source, slot = link[0], link[1], link[2]
        elif isinstance(link, dict):
            key, source, slot = link.get("id"), link.get("origin_id"), link.get("origin_slot", 0)
        else:
            continue
        if isinstance(key, int | str) and isinstance(source, int | str) and isinstance(slot, int):
            links[key] = [str(source), slot]
    return links


def graph_from_workflow(workflow: dict[str, Any], notes: list[str]) -> Graph:
    """The editor graph as an API graph: widgets by name, links as ``[node, slot]``; muted
    nodes (mode 2) left out; a bypassed one (mode 4) keeps only its links, so a walk passes
    through it as ComfyUI does."""
    links = _links(workflow)
    graph: Graph = {}
    for node in _list(workflow.get("nodes")):
        if not isinstance(node, dict) or node.get("mode", 0) == 2:
            continue
        ctype = str(node.get("type", ""))
        values = node.get("widgets_values")
        inputs: dict[str, Any] = {}
        if node.get("mode", 0) == 4:
            ctype, values = f"bypassed {ctype}", None
        if isinstance(values, list):
            inputs |= _widgets(ctype, values)
        elif isinstance(values, dict):
            inputs |= values
        for slot in _list(node.get("inputs")):
            link = slot.get("link") if isinstance(slot, dict) else None
            if isinstance(link, int | str) and link in links:
                inputs[str(slot.get("name"))] = links[link]
        graph[str(node.get("id"))] = {"class_type": ctype, "inputs": inputs}
    if not graph:
        notes.append("the workflow has no nodes")
    return graph


def _load(text: str | None, what: str, notes: list[str]) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        notes.append(f"'{what}' is not readable JSON ({type(exc).__name__}): ignored")
        return None


def read_comfyui(meta: ImageMetadata) -> ImageRecord | Declined:
    if "prompt" not in meta.text and "workflow" not in meta.text:
        return Declined("comfyui", "no 'prompt' or 'workflow' chunk")
    notes: list[str] = []
    prompt = _load(meta.text.get("prompt"), "prompt", notes)
    if (
        isinstance(prompt, dict)
        and all(isinstance(v, dict) for v in prompt.values())
        and any("class_type" in v for v in prompt.values())
    ):
        return read_graph(prompt, notes)
    workflow = _load(meta.text.get("workflow"), "workflow", notes)
    if isinstance(workflow, dict) and isinstance(workflow.get("nodes"), list):
        rec = read_graph(graph_from_workflow(workflow, notes), notes)
        rec.notes.append("read from the editor graph ('workflow'): no 'prompt' graph")
        return rec
    return Declined("comfyui", "; ".join(notes) or "neither chunk is a ComfyUI graph")


@hookimpl(trylast=True)
def register_image_readers(register: Any) -> None:
    register("comfyui", read_comfyui)

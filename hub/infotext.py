"""A1111 prompt syntax and infotext (FORMATS.md §9): extra-network tags in prompts, and the
``parameters`` text that PNGs carry."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

_TAG = re.compile(r"<(lora|lyco|hypernet):([^>]+)>", re.IGNORECASE)
_PAIR = re.compile(r'\s*([\w /-]+):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')


@dataclass(frozen=True)
class Tag:
    """One ``<lora:NAME:TE:UNET>`` or ``<hypernet:NAME:W>`` tag from a prompt."""

    network: str  # "lora" or "hypernet"
    name: str
    te: float = 1.0
    unet: float = 1.0


def _number(text: str, tag: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"'{tag}': '{text}' is not a number") from None


def parse_tag(network: str, body: str) -> Tag:
    """The tag with A1111's argument rules: positional ``TE[:UNET]`` (UNET defaults to TE),
    named ``te=``/``unet=`` override; ``dyn`` is accepted and ignored."""
    name, *args = body.split(":")
    tag = f"<{network}:{body}>"
    positional = [a for a in args if "=" not in a]
    named = dict(a.split("=", 1) for a in args if "=" in a)
    te = _number(positional[0], tag) if positional else 1.0
    unet = _number(positional[1], tag) if len(positional) > 1 else te
    te = _number(named["te"], tag) if "te" in named else te
    unet = _number(named["unet"], tag) if "unet" in named else unet
    kind = "hypernet" if network.lower() == "hypernet" else "lora"
    return Tag(kind, name.strip(), te, unet)


def split_prompt(prompt: str) -> tuple[str, list[Tag]]:
    """The text the encoder sees (tags removed, spacing tidied) and the tags, in order."""
    tags = [parse_tag(m[1], m[2]) for m in _TAG.finditer(prompt)]
    text = _TAG.sub("", prompt)
    text = re.sub(r"[ \t]+", " ", text)
    text = re.sub(r"\s+([,.])", r"\1", text)
    text = re.sub(r"(,\s*){2,}", ", ", text)
    return text.strip(" ,\n"), tags


@dataclass
class Infotext:
    """The prompt, the negative prompt and the settings line's pairs, in order."""

    prompt: str
    negative: str = ""
    params: dict[str, Any] = field(default_factory=dict)


def _value(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if any(c in text for c in ",:\n") else text


def format_infotext(info: Infotext) -> str:
    """A1111's ``parameters`` text; pairs whose value is None are left out."""
    lines = [info.prompt]
    if info.negative:
        lines.append(f"Negative prompt: {info.negative}")
    lines.append(", ".join(f"{k}: {_value(v)}" for k, v in info.params.items() if v is not None))
    return "\n".join(lines)


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        try:
            return str(json.loads(text))
        except ValueError:
            return text[1:-1]
    return text


def parse_infotext(text: str) -> Infotext:
    """A1111 infotext from any tool: the last line with ``Steps: `` is the settings line."""
    lines = text.strip().split("\n")
    settings_at = next(
        (i for i in range(len(lines) - 1, -1, -1) if lines[i].startswith("Steps: ")), None
    )
    params: dict[str, Any] = {}
    if settings_at is not None:
        for m in _PAIR.finditer(lines[settings_at]):
            params[m[1].strip()] = _unquote(m[2])
        lines = lines[:settings_at]
    prompt, negative, in_negative = [], [], False
    for line in lines:
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[len("Negative prompt:") :].strip()
        (negative if in_negative else prompt).append(line)
    if "Size" in params:
        w, _, h = params["Size"].partition("x")
        params["Size"] = (int(w), int(h))
    return Infotext("\n".join(prompt).strip(), "\n".join(negative).strip(), params)


def hash_list(text: str | None) -> dict[str, str]:
    """``"a: 0123456789ab, b: ..."`` (``Lora hashes``, ``TI hashes``) as name -> hash."""
    out = {}
    for part in (text or "").split(","):
        name, sep, value = part.rpartition(":")
        if sep and name.strip():
            out[name.strip()] = value.strip()
    return out


def format_hash_list(pairs: dict[str, str]) -> str | None:
    """The inverse of :func:`hash_list`; names lose ``:`` and ``,`` as in A1111."""
    if not pairs:
        return None
    return ", ".join(f"{re.sub('[:,]', '', k)}: {v}" for k, v in pairs.items())

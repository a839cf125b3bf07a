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


def find_tags(prompt: str) -> tuple[list[Tag], list[str]]:
    """Every extra-network tag of a prompt that parses, and why the others do not."""
    tags, errors = [], []
    for m in _TAG.finditer(prompt):
        try:
            tags.append(parse_tag(m[1], m[2]))
        except ValueError as exc:
            errors.append(str(exc))
    return tags, errors


@dataclass
class Infotext:
    """The prompt, the negative prompt and the settings line's pairs, in order.

    A value is text, except ``Size`` (a (width, height) tuple) and JSON written unquoted
    after a key (``Hashes: {...}``, ``Civitai resources: [...]``), kept as read. A key written
    twice keeps its last value in ``params`` and its first in ``earlier``.
    """

    prompt: str
    negative: str = ""
    params: dict[str, Any] = field(default_factory=dict)
    earlier: dict[str, Any] = field(default_factory=dict)


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


def split_sampler(name: str) -> tuple[str, str]:
    """A1111's legacy combined names (``DPM++ 2M Karras``) as (sampler, schedule type)."""
    for schedule in ("Karras", "Exponential", "Polyexponential", "SGM Uniform", "Beta"):
        if name.endswith(" " + schedule):
            return name[: -len(schedule) - 1], schedule
    return name, "Automatic"


def _unquote(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        try:
            return str(json.loads(text))
        except ValueError:
            return text[1:-1]
    return text


_KEY = re.compile(r"\s*([\w /-]+):\s*")
_QUOTED = re.compile(r'"(?:\\.|[^\\"])*"')
_BARE = re.compile(r"\s*([\w /-]+)\s*$")
_SIZE = re.compile(r"^(\d+)x(\d+)$")
_JSON = json.JSONDecoder()


def _ends_value(line: str, pos: int) -> int | None:
    """Past the comma that ends a value at ``pos`` (or the line's end); None if text follows."""
    rest = len(line) - len(line[pos:].lstrip(" "))
    if rest == len(line):
        return rest
    return rest + 1 if line[rest] == "," else None


def _value_at(line: str, pos: int) -> tuple[Any, int]:
    """The value starting at ``pos`` and where the next pair starts: a JSON string, JSON
    written unquoted (read whole, commas and all), or the text up to the next comma."""
    head = line[pos : pos + 1]
    if head == '"' and (m := _QUOTED.match(line, pos)) and (nxt := _ends_value(line, m.end())):
        return _unquote(m[0]), nxt
    if head in ("{", "["):
        try:
            value, end = _JSON.raw_decode(line, pos)
        except (ValueError, RecursionError):
            pass
        else:
            if (nxt := _ends_value(line, end)) is not None:
                return value, nxt
    comma = line.find(",", pos)
    end = len(line) if comma < 0 else comma
    return line[pos:end].strip(), end + 1


def _scan(line: str) -> list[tuple[str, Any, bool]]:
    """(key, value, bare) for each pair of a settings line, in order; a bare key is its own
    value; text that is no pair is skipped."""
    pairs: list[tuple[str, Any, bool]] = []
    pos = 0
    while pos < len(line):
        m = _KEY.match(line, pos)
        if m is None:
            comma = line.find(",", pos)
            end = len(line) if comma < 0 else comma
            if bare := _BARE.match(line[pos:end]):
                pairs.append((bare[1].strip(), bare[1].strip(), True))
            pos = end + 1
            continue
        value, pos = _value_at(line, m.end())
        pairs.append((m[1].strip(), value, False))
    return pairs


def _is_settings(pairs: list[tuple[str, Any, bool]]) -> bool:
    """A1111's test: three ``key: value`` pairs or more (bare keys do not count)."""
    return sum(not bare for _, _, bare in pairs) >= 3


def _split_one_line(lines: list[str]) -> list[str]:
    """Civitai's one-line text: its settings start at the last ``Steps: `` of the line and
    its negative prompt at ``Negative prompt:`` before them."""
    last = lines[-1]
    at = last.rfind("Steps: ")
    if at <= 0 or last.startswith("Steps: ") or not _is_settings(_scan(last[at:])):
        return lines
    head, settings = last[:at], last[at:]
    neg = head.find("Negative prompt:")
    heads = [head[:neg], head[neg:]] if neg > 0 else [head]
    return [*lines[:-1], *heads, settings]


def parse_infotext(text: str) -> Infotext:
    """A1111 infotext from any tool: the last line is the settings line when it holds three
    pairs or more (else the last line starting with ``Steps: `` is); everything before it is
    the prompt, then the negative prompt from ``Negative prompt:`` on."""
    text = re.sub(r"^parameters:\s*", "", text.strip(), flags=re.IGNORECASE)
    lines = _split_one_line(text.split("\n"))
    pairs = _scan(lines[-1])
    if _is_settings(pairs):
        lines = lines[:-1]
    else:
        at = next(
            (i for i in range(len(lines) - 1, -1, -1) if lines[i].startswith("Steps: ")), None
        )
        pairs = _scan(lines[at]) if at is not None else []
        lines = lines[:at] if at is not None else lines
    info = Infotext("")
    for key, value, _ in pairs:
        if key in info.params:
            info.earlier.setdefault(key, info.params.pop(key))
        info.params[key] = value
    prompt, negative, in_negative = [], [], False
    for line in lines:
        line = line.strip()
        if line.startswith("Negative prompt:"):
            in_negative = True
            line = line[len("Negative prompt:") :].strip()
        (negative if in_negative else prompt).append(line)
    info.prompt, info.negative = "\n".join(prompt).strip(), "\n".join(negative).strip()
    size = _SIZE.match(str(info.params.get("Size", "")))
    if size:
        info.params["Size"] = (int(size[1]), int(size[2]))
    return info


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

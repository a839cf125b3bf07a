"""The merge-method protocol: a per-tensor function, how many checkpoints it combines, and the
options it takes (``hub merge --method NAME --option KEY=VALUE``), each declared with its type,
default and help so the command line can validate and list them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from hub.core.errors import UsageError

OptionValue = float | int | str | bool
MergeFunction = Callable[[list[Any], float, dict[str, Any], str], Any]
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off"}
_WANTED = {int: "an integer", float: "a number", bool: "true or false", str: "text"}


@dataclass(frozen=True)
class MergeOption:
    """One option of a merge method: ``type`` is float, int, str or bool."""

    name: str
    type: type
    default: OptionValue
    help: str

    def parse(self, text: str) -> OptionValue:
        """The option's value from its command-line text; ValueError when it is not one."""
        if self.type is bool:
            if text.lower() in _TRUE | _FALSE:
                return text.lower() in _TRUE
            raise ValueError(text)
        return self.type(text)

    def describe(self) -> str:
        """``density=0.2 (float): the help``."""
        return f"{self.name}={self.default} ({self.type.__name__}): {self.help}"


@dataclass(frozen=True)
class MergeMethod:
    """``inputs``: how many checkpoints it combines (primary included); ``label``: A1111's
    ``interp_method`` name; ``run(tensors, alpha, options, key)`` returns the merged tensor
    (inputs in float32, primary first; ``options`` holds every declared option);
    ``elementwise``: it may be run on row slices (bounded memory for big tensors)."""

    name: str
    inputs: tuple[int, int]
    label: str
    run: MergeFunction
    elementwise: bool = False
    options: tuple[MergeOption, ...] = ()

    def usage(self) -> str:
        """The options in one line, for messages: ``density=0.2 (float), seed=0 (int)``."""
        if not self.options:
            return f"{self.name} takes no options"
        listed = ", ".join(f"{o.name}={o.default} ({o.type.__name__})" for o in self.options)
        return f"{self.name} options: {listed}"

    def settings(self, given: Mapping[str, str]) -> dict[str, OptionValue]:
        """Every declared option, from ``given`` (``KEY -> text``) or its default; an
        unknown key or a value of the wrong type is a :class:`UsageError`."""
        declared = {o.name: o for o in self.options}
        values = {o.name: o.default for o in self.options}
        for key, text in given.items():
            option = declared.get(key)
            if option is None:
                raise UsageError(f"merge method {self.name} has no option '{key}'", self.usage())
            try:
                values[key] = option.parse(text)
            except ValueError:
                raise UsageError(
                    f"merge method {self.name}: option {key} takes "
                    f"{_WANTED.get(option.type, option.type.__name__)}, not '{text}'",
                    self.usage(),
                ) from None
        return values


def parse_option_pairs(pairs: list[str]) -> dict[str, str]:
    """``["density=0.3", "seed=1"]`` -> ``{"density": "0.3", "seed": "1"}``."""
    given: dict[str, str] = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or not key.strip():
            raise UsageError(f"--option takes KEY=VALUE, not '{pair}'", "e.g. --option density=0.3")
        given[key.strip()] = value.strip()
    return given

"""A hook wrapper on every hook sd-hub declares: it records each call (hook name, and
whether it answered) and passes the result through."""

from __future__ import annotations

import hub
from hub.plugins import hookspecs

from hub_ext import mark


def _recorder(hook_name: str):
    def wrap():  # a wrapper may take none of the hook's arguments
        result = yield
        mark("hook", name=hook_name, answered=result is not None)
        return result

    wrap.__name__ = hook_name
    return hub.hookimpl(wrapper=True)(wrap)


HOOKS = sorted(name for name in dir(hookspecs) if hasattr(getattr(hookspecs, name), "hub_spec"))
for _name in HOOKS:
    globals()[_name] = _recorder(_name)

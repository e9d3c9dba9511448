"""Flows whose parameters are an options model's fields: written once, shown flat by Prefect.

`@flat_parameters(Model)` under `@flow` gives the flow one parameter per field of `Model` (type,
default and, through the generated docstring, the field's description), which is what
deployments, prefect.yaml and the UI's run form see. The function body receives a single
validated `Model` instance instead of the loose values.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel

from mm2latent.training.options import parse_options

R = TypeVar("R")


def field_parameters(model: type[BaseModel]) -> list[inspect.Parameter]:
    """One keyword-or-positional parameter per field of `model`, in field order."""
    params = []
    for name, info in model.model_fields.items():
        default = inspect.Parameter.empty if info.is_required() else info.get_default(
            call_default_factory=True)
        params.append(inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                        default=default, annotation=info.annotation))
    return params


def _docstring(doc: str, model: type[BaseModel]) -> str:
    """`doc` with one `Args:` line per field of `model` put before the function's own ones."""
    lines = [f"    {name}: {info.description or ''}" for name, info in model.model_fields.items()]
    head, sep, tail = doc.partition("Args:\n")
    if not sep:
        return doc.rstrip() + "\n\nArgs:\n" + "\n".join(lines) + "\n"
    return head + sep + "\n".join(lines) + "\n" + tail


def flat_parameters(model: type[BaseModel]) -> Callable[[Callable[..., R]], Callable[..., R]]:
    """Decorator: the function's first parameter (a `model`) becomes `model`'s fields.

    Parameters after the first (runtime-only ones such as a progress callback) follow the
    fields unchanged. A bad value raises ConfigError naming the option.
    """
    def decorate(fn: Callable[..., R]) -> Callable[..., R]:
        own = inspect.signature(fn, eval_str=True)
        extra = list(own.parameters.values())[1:]
        signature = inspect.Signature(field_parameters(model) + extra,
                                      return_annotation=own.return_annotation)

        @functools.wraps(fn)
        def with_options(*args: Any, **kwargs: Any) -> R:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            values = dict(bound.arguments)
            options = parse_options(model, {k: values.pop(k) for k in model.model_fields})
            return fn(options, **values)

        del with_options.__wrapped__  # callers must see the flat signature, not fn's
        with_options.__signature__ = signature
        with_options.__annotations__ = {
            **{p.name: p.annotation for p in signature.parameters.values()},
            "return": own.return_annotation}
        with_options.__doc__ = _docstring(inspect.getdoc(fn) or "", model)
        return with_options

    return decorate

"""Typer commands whose flags are an options model's fields (mm2latent.training.options).

`@options_command(Model)` gives the command one `--flag` per field (help from the field's
description, default from the field); a list field is a comma list on the command line, which
the model splits and checks. The command body receives one validated `Model`.
"""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Callable
from typing import Annotated, Any, Optional, Union, get_args, get_origin

import typer
from pydantic import BaseModel

from flows.cli_common import user_errors
from flows.parameters import field_parameters
from mm2latent.training.options import parse_options


def _cli_type(annotation: Any) -> Any:
    """The type typer parses: `X | None` as Optional[X], a list as its comma-string form."""
    if get_origin(annotation) in (Union, types.UnionType):
        inner = [a for a in get_args(annotation) if a is not type(None)]
        return Optional[_cli_type(inner[0])]  # noqa: UP045 (typer reads typing.Optional)
    return str if get_origin(annotation) is list else annotation


def _cli_parameter(param: inspect.Parameter, help_text: str) -> inspect.Parameter:
    default = param.default
    if isinstance(default, list):
        default = ",".join(default)
    annotation = Annotated[_cli_type(param.annotation), typer.Option(help=help_text)]
    return param.replace(kind=inspect.Parameter.KEYWORD_ONLY, default=default,
                         annotation=annotation)


def options_command(model: type[BaseModel]) -> Callable[[Callable[[Any], None]], Callable[..., None]]:
    """Decorator: a typer command with `model`'s fields as flags, calling fn(model instance)."""
    def decorate(fn: Callable[[Any], None]) -> Callable[..., None]:
        descriptions = {name: info.description or "" for name, info in model.model_fields.items()}
        params = [_cli_parameter(p, descriptions[p.name]) for p in field_parameters(model)]

        @functools.wraps(fn)
        def command(**values: Any) -> None:
            with user_errors():
                options = parse_options(model, values)
            fn(options)

        del command.__wrapped__  # typer must read the flags, not fn's single parameter
        command.__signature__ = inspect.Signature(params)
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command

    return decorate

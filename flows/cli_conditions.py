"""Per-modality condition options of `generate` and `edit`, derived from a modality registry.

Each condition of the registry (mask, sketch, flame, and any MM2LATENT_MODALITIES plugin) gets
its `--<name>` / `--target-<name>` flag, with help from its spec's ConditionHelp; the command
body receives them as one {modality: value or None} dict. Built when the app is built, so a
registry read at CLI start decides the flags.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from typing import Annotated, Any, Optional

import typer

from mm2latent_core.errors import ConfigError
from mm2latent_core.modalities.spec import ModalityRegistry, ModalitySpec

ConditionValues = Optional[dict[str, Optional[str]]]  # modality -> its option's value

Ref = "a file, or a dataset sample as DATASET#INDEX (e.g. data/tiny#3)"

# Help of each group of options: spec -> help text.
HELPS: dict[str, Callable[[ModalitySpec], str]] = {
    "file": lambda s: f"{s.condition_help.file}, or DATASET#INDEX.",
    "target": lambda s: f"Spatial edit toward this {s.condition_help.noun}: {Ref}.",
    "own": lambda s: f"The photo's own {s.condition_help.noun} instead of "
                     f"{s.condition_help.annotator}: {Ref}.",
}


def flag(modality: str, prefix: str = "") -> str:
    """The command-line flag of a modality's option, e.g. --target-mask."""
    return "--" + f"{prefix}{modality}".replace("_", "-")


def condition_options(registry: ModalityRegistry, prefix: str, helps: str
                      ) -> dict[str, inspect.Parameter]:
    """modality -> keyword parameter `<prefix><name>` (a str option, default None), registry order."""
    options = {}
    for name in registry.conditions:
        help_text = HELPS[helps](registry.get(name))
        annotation = Annotated[Optional[str], typer.Option(flag(name, prefix), help=help_text)]  # noqa: UP045 (typer reads typing.Optional)
        options[name] = inspect.Parameter(f"{prefix}{name}", inspect.Parameter.KEYWORD_ONLY,
                                          default=None, annotation=annotation)
    return options


def with_condition_options(fn: Callable[..., Any], groups: dict[str, dict[str, inspect.Parameter]],
                           fixed: dict[str, Any]) -> Callable[..., None]:
    """`fn` as a typer command whose placeholder parameters (keys of `groups`) are replaced by
    the group's options; fn receives each group as {modality: value or None}, and the
    parameters named in `fixed` (not options) with those values."""
    hints = typing.get_type_hints(fn, include_extras=True)
    params = []
    for param in inspect.signature(fn).parameters.values():
        if param.name in fixed:
            continue
        if param.name in groups:
            params += groups[param.name].values()
        else:  # typer calls with keywords only; Argument / Option come from the annotation
            params.append(param.replace(annotation=hints[param.name],
                                        kind=inspect.Parameter.KEYWORD_ONLY))

    @functools.wraps(fn)
    def command(**values: Any) -> None:
        for group, options in groups.items():
            values[group] = {m: values.pop(p.name) for m, p in options.items()}
        return fn(**values, **fixed)

    del command.__wrapped__  # typer must read the built signature, not fn's placeholders
    command.__signature__ = inspect.Signature(params)
    command.__annotations__ = {p.name: p.annotation for p in params}
    return command


def one_given(values: dict[str, str | None], prefix: str, what: str) -> tuple[str, str] | None:
    """(modality, value) of the single option given, None if none; ConfigError if several."""
    given = {m: v for m, v in values.items() if v}
    if len(given) > 1:
        raise ConfigError(f"give at most one {what}: {', '.join(flag(m, prefix) for m in given)} "
                          "were given.")
    return next(iter(given.items()), None)


def choices(names: tuple[str, ...], last: str = "or") -> str:
    """'a, b or c' of names."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} {last} {names[-1]}"

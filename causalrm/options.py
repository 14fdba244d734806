"""Configuration dataclasses as the single source of truth for the command line (TRL's ``HfArgumentParser`` idea).

A field declared with :func:`option` carries its help text, its ``--flag`` (``None``: not on the command line) and
its choices in ``dataclasses.field(metadata=...)``. From that metadata:

* :func:`add_arguments` adds one argparse option per field (``causalrm fit``, and a subset for ``causalrm bench``);
  every option defaults to ``None`` (a flag ``store_true``, to False), so an option left out keeps the dataclass's
  default and the help text shows it;
* :func:`from_args` turns the parsed namespace back into the dataclass's keyword arguments;
* :func:`to_cli` writes a configuration as the flags that reproduce it (the fields that differ from their defaults),
  which the app's "equivalent commands" use: ``causalrm fit LOG --out RUN  + to_cli(config)`` refits the same model.

Types are read from the field's annotation: ``bool`` (a ``store_true`` flag: only a False default is allowed on the
command line), ``int``, ``float``, ``str``, their ``| None`` forms, ``tuple[int, ...]`` (written ``256,64``) and
``tuple[str, ...]`` (written ``naive,ips``); the dataclass turns the comma-separated text into its tuple.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
from collections.abc import Callable, Iterable
from typing import Any

from causalrm.errors import InputError

_AUTO_FLAG = object()


def option(default: Any = dataclasses.MISSING, *, help: str, flag: str | None | object = _AUTO_FLAG,
           choices: Iterable[str] | Callable[[], Iterable[str]] | None = None, metavar: str | None = None,
           labels: dict[str, str] | None = None, none: str | None = None,
           default_factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field with command-line metadata (module docstring). ``flag`` defaults to ``--name-with-dashes``;
    ``choices`` may be a callable (read when the parser is built, e.g. the method registry's names); ``labels``:
    display labels of some choices (the app's lists, :func:`choice_labels`); ``none``: how the command line says
    None when None is not the default (``--patience 0``: never stop early)."""
    meta = {"help": help, "flag": flag, "choices": choices, "metavar": metavar, "labels": labels, "none": none}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _flag(f: dataclasses.Field) -> str | None:
    flag = f.metadata.get("flag", None) if "help" in f.metadata else None
    if flag is _AUTO_FLAG:
        return "--" + f.name.replace("_", "-")
    return flag


def cli_fields(cls: Any, names: Iterable[str] | None = None) -> list[dataclasses.Field]:
    """The fields of ``cls`` that have a command-line flag (only ``names``, in that order, when given)."""
    fields = {f.name: f for f in dataclasses.fields(cls) if _flag(f) is not None}
    if names is None:
        return list(fields.values())
    missing = [n for n in names if n not in fields]
    if missing:
        raise ValueError(f"{cls.__name__} has no command-line field(s) {missing}")
    return [fields[n] for n in names]


def choices_of(f: dataclasses.Field) -> tuple[str, ...] | None:
    c = f.metadata.get("choices")
    if c is None:
        return None
    return tuple(c() if callable(c) else c)


def _kind(f: dataclasses.Field) -> str:
    t = str(f.type).replace(" ", "")
    for kind in ("bool", "int", "float", "str"):
        if t in (kind, f"{kind}|None", f"None|{kind}"):
            return kind
    if t.startswith("tuple[int"):
        return "ints"
    if t.startswith("tuple[str"):
        return "strs"
    raise ValueError(f"field {f.name!r}: no command-line form for type {f.type!r}")


def as_str_tuple(values: str | Iterable[Any] | None) -> tuple[str, ...]:
    """``("naive", "ips")`` from ``"naive, ips"`` or any iterable of names: stripped, empty items dropped (the
    command-line form of a ``tuple[str, ...]`` field)."""
    items = values.split(",") if isinstance(values, str) else (values or ())
    return tuple(s for s in (str(v).strip() for v in items) if s)


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def add_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: Any,
                  names: Iterable[str] | None = None, *, help_suffix: dict[str, str] | None = None,
                  prefix: str = "") -> None:
    """One option per command-line field of ``cls`` (or of ``names``), dest = ``prefix`` + the field name (a prefix
    keeps a backbone's options apart from ``FitConfig``'s), default None."""
    for f in cli_fields(cls, names):
        kind = _kind(f)
        default = _default(f)
        text = f.metadata["help"]
        choices = choices_of(f)
        text = text.replace("{choices}", ", ".join(choices or ()))
        if help_suffix and f.name in help_suffix:
            text += help_suffix[f.name]
        if kind == "bool":
            if default:
                raise ValueError(f"field {f.name!r}: a store_true flag needs a False default")
            parser.add_argument(_flag(f), dest=prefix + f.name, action="store_true", default=None, help=text)
            continue
        if default is not None and "default" not in text:
            text += f" (default {_show(default) or repr('')})"
        kw: dict[str, Any] = {"dest": prefix + f.name, "default": None, "help": text}
        if kind in ("int", "float"):
            kw["type"] = int if kind == "int" else float
        if choices and kind == "str" and not callable(f.metadata.get("choices")):
            kw["choices"] = choices
        if f.metadata.get("metavar"):
            kw["metavar"] = f.metadata["metavar"]
        parser.add_argument(_flag(f), **kw)


def from_args(cls: Any, args: argparse.Namespace, names: Iterable[str] | None = None, *,
              prefix: str = "") -> dict[str, Any]:
    """The keyword arguments of ``cls`` that ``args`` sets (options left out are absent: the defaults apply;
    ``prefix``: that of :func:`add_arguments`)."""
    out: dict[str, Any] = {}
    for f in cli_fields(cls, names):
        value = getattr(args, prefix + f.name, None)
        if value is None:
            continue
        out[f.name] = value
    return out


def to_cli(config: Any, *, skip: Iterable[str] = ()) -> list[str]:
    """The flags that reproduce ``config``: one per command-line field whose value differs from its default
    (``skip``: fields the caller writes itself). A field without a flag that differs is an InputError: the command
    would not reproduce the configuration."""
    skip = set(skip)
    out: list[str] = []
    for f in dataclasses.fields(config):
        if f.name in skip:
            continue
        value, default = getattr(config, f.name), _default(f)
        if isinstance(default, list):
            default = tuple(default)
        if (tuple(value) if isinstance(value, list) else value) == default:
            continue
        flag = _flag(f)
        if flag is None:
            raise InputError(f"{type(config).__name__}.{f.name} = {value!r} has no command-line option; the "
                             "equivalent command would not reproduce it")
        if _kind(f) == "bool":
            if value:
                out.append(flag)
            continue
        if value is None:
            if f.metadata.get("none") is None:
                raise InputError(f"{type(config).__name__}.{f.name}: None cannot be written as {flag}")
            out += [flag, f.metadata["none"]]
            continue
        out += [flag, repr(value) if isinstance(value, float) else _show(value)]
    return out


def choice_labels(cls: Any, name: str, *, mark_default: bool = False, exclude: Iterable[str] = ()) -> dict[str, str]:
    """Display label -> value for the choices of ``cls``'s field ``name``, in their order (the app's choice lists):
    the field's ``labels`` where it has one, else the value itself; ``mark_default``: the default's label ends in
    " (default)"; ``exclude``: values left out."""
    f = {g.name: g for g in dataclasses.fields(cls)}[name]
    labels, default, exclude = f.metadata.get("labels") or {}, _default(f), set(exclude)
    out: dict[str, str] = {}
    for value in choices_of(f) or ():
        if value in exclude:
            continue
        label = labels.get(value, value)
        out[label + (" (default)" if mark_default and value == default else "")] = value
    return out


def join(argv: Iterable[str]) -> str:
    """``argv`` as one shell-quoted command line."""
    return " ".join(shlex.quote(a) for a in argv)


__all__ = ["add_arguments", "as_str_tuple", "choice_labels", "choices_of", "cli_fields", "from_args", "join", "option",
           "to_cli"]

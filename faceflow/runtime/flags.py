"""One path from a dataclass to its command-line flags and back, presets applied in one place.

A dataclass field ``batch_size`` becomes the flag ``--batch-size``; its help is the field's
``metadata["help"]`` followed by where the value comes from when the flag is left out: the
presets that set it (``(default: from the preset: tiny 8, paper 16)``) or the field's own default.
Every flag's parser default is None, so :func:`dataclass_from_args` tells a flag the user gave
(it wins) from one left out (the preset's value, else the field's default)::

    @dataclass
    class Options:
        steps: int = option(100, "optimisation steps")  # = field(default=100, metadata={"help": ...})

    add_dataclass_arguments(parser, Options, presets={"tiny": {"steps": 10}})
    opts = dataclass_from_args(Options, parser.parse_args(argv), preset={"steps": 10})

Field metadata read here: ``help``, ``choices``, ``metavar``, ``nargs`` (a list field takes
``+`` values unless told otherwise) and ``flag`` (a spelling other than the field's name, e.g.
``--flow`` for the field ``flows``). The flag's type comes from the annotation: ``int``, ``float``,
``str``, ``bool`` (a switch: ``--name`` turns an off-by-default field on, ``--no-name`` turns an
on-by-default field off, and its help says what ``--no-name`` does), ``list[T]``,
``tuple[T, ...]`` (read as a list, stored as a tuple) and ``T | None``. No torch, no numpy: the
option modules build their parsers with it and ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from faceflow.errors import FaceflowError

# the keys of a field's metadata that set how its flag reads
FLAG_KEYS = ("help", "choices", "metavar", "nargs", "flag")


def option(default, text: str, **flag) -> dataclasses.Field:
    """A dataclass field with its flag's help ``text`` (and ``choices``, ``metavar``, ``nargs``,
    ``flag``) in its metadata; a list default is copied for each instance; ``dataclasses.MISSING``
    makes a field without a default (a required argument of the class)."""
    meta = {"help": text, **flag}
    if default is dataclasses.MISSING:
        return dataclasses.field(metadata=meta)
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def flag_name(name: str, negative: bool = False) -> str:
    """``batch_size`` -> ``--batch-size``; ``negative``: ``dense`` -> ``--no-dense``."""
    return ("--no-" if negative else "--") + name.replace("_", "-")


def _value_type(annotation) -> tuple[type, bool]:
    """(element type, is a list) of a field annotation: ``int``, ``list[float]``, ``str | None``."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(inner) != 1:
            raise FaceflowError(f"a command-line flag cannot take the type {annotation}")
        annotation = inner[0]
    if typing.get_origin(annotation) in (list, tuple):
        return typing.get_args(annotation)[0], True
    if annotation in (int, float, str, bool):
        return annotation, False
    raise FaceflowError(f"a command-line flag cannot take the type {annotation}")


def _field_default(f: dataclasses.Field):
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None if f.default is dataclasses.MISSING else f.default


def _show(value) -> str:
    return " ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def default_text(f: dataclasses.Field, presets: Mapping[str, Mapping[str, Any]]) -> str:
    """`` (default: ...)`` for a field's help: the presets that set it, else the field's default
    (nothing for a switch or an empty / None default)."""
    set_by = [f"{name} {_show(values[f.name])}" for name, values in presets.items() if f.name in values]
    if set_by:
        return f" (default: from the preset: {', '.join(set_by)})"
    value = _field_default(f)
    if value is None or isinstance(value, bool) or value in ([], ()):
        return ""
    return f" (default: {_show(value)})"


def add_dataclass_arguments(parser, cls, presets: Mapping[str, Mapping[str, Any]] | None = None,
                            names: Iterable[str] | None = None, required: Iterable[str] = (),
                            aliases: Mapping[str, Iterable[str]] | None = None,
                            custom: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, argparse.Action]:
    """Add the flags of dataclass ``cls`` to ``parser`` (an ``ArgumentParser`` or a group of one).

    ``presets``: ``{preset: {field: value}}``, shown in the help as the defaults; ``names``: the
    fields to add, in this order (default: all, in declaration order); ``required``: fields whose
    flag must be given; ``aliases``: ``{field: ("--old-spelling", ...)}``, other spellings of the
    same flag (named in its help); ``custom``: ``{field: {metadata key: value}}`` replacing the
    field's metadata for this parser (e.g. another help text, ``"choices": None``).
    Returns ``{field: argparse action}``.
    """
    presets, aliases, custom = presets or {}, aliases or {}, custom or {}
    by_name = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    actions = {}
    for name in (list(names) if names is not None else list(by_name)):
        if name not in by_name:
            raise FaceflowError(f"{cls.__name__} has no field {name!r}")
        f = by_name[name]
        meta = {k: v for k, v in {**f.metadata, **custom.get(name, {})}.items() if k in FLAG_KEYS}
        kind, is_list = _value_type(hints[name])
        spellings = list(aliases.get(name, ()))
        text = meta.get("help", "")
        if spellings:
            text += f" (also spelt {' or '.join(spellings)})"
        kw: dict[str, Any] = {"dest": name, "default": None}
        if name in required:
            kw["required"] = True
        else:
            text += default_text(f, presets)
        negative = kind is bool and not is_list and _field_default(f) is True
        if negative:  # an on-by-default switch: --no-NAME turns it off
            kw.update(action="store_const", const=False)
        elif kind is bool and not is_list:
            kw["action"] = "store_true"
        else:
            kw["type"] = kind
            if is_list:
                kw["nargs"] = meta.get("nargs", "+")
            for key in ("choices", "metavar"):
                if meta.get(key) is not None:
                    kw[key] = meta[key]
        if negative and meta.get("flag"):
            raise FaceflowError(f"{cls.__name__}.{name}: an on-by-default switch is spelt --no-{name.replace('_', '-')}"
                                f"; it cannot take the flag {meta['flag']}")
        flag = meta.get("flag") or flag_name(name, negative)
        actions[name] = parser.add_argument(flag, *spellings, help=text, **kw)
    return actions


def dataclass_from_args(cls, args, preset: Mapping[str, Any] | None = None, names: Iterable[str] | None = None,
                        **fixed):
    """``cls`` from parsed ``args``: the field defaults, overridden by ``preset`` (``{field: value}``),
    overridden by the flags given on the command line (values not None), overridden by ``fixed``.
    ``names``: the fields read from ``args`` (default: all). Keys of ``preset`` that are not fields
    of ``cls`` are left out."""
    fields = {f.name for f in dataclasses.fields(cls)}
    if unknown := sorted(set(fixed) - fields):
        raise FaceflowError(f"{cls.__name__} has no field {', '.join(unknown)}")
    given = {n: getattr(args, n) for n in (names if names is not None else fields)
             if getattr(args, n, None) is not None}
    values = {**dict(preset or {}), **given, **fixed}
    hints = typing.get_type_hints(cls)
    return cls(**{k: tuple(v) if _is_tuple(hints[k]) and isinstance(v, list) else v
                  for k, v in values.items() if k in fields})


def _is_tuple(annotation) -> bool:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1:
        annotation = args[0]
    return typing.get_origin(annotation) is tuple

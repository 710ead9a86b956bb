"""Typed dataclass configs -> command-line interface, JSON and back.

A config is a (possibly nested) dataclass whose fields have defaults and a one-line docstring right
below them; :func:`parse_config` builds an ``argparse`` parser from it, so that

    rnnkit train --model.hidden_size 512 --max-time 60 --preset d2l --config my.json

works with no per-flag code. Precedence, lowest first: field defaults, ``--preset``, ``--config``
file (JSON, or TOML on Python ≥ 3.11), flags. Validation lives in each dataclass' ``__post_init__``;
a ``ValueError`` from there becomes one ``error:`` line and exit status 2.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import difflib
import functools
import inspect
import json
import sys
import textwrap
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

C = TypeVar("C")


@functools.cache
def field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings (the string literal under each field) of dataclass ``cls`` and its bases.

    Read from the source with ``ast``: about 0.13 s for ``rnnkit train``'s classes, so the parser asks for
    them only when help is printed (docs/cli.md, "Why not jsonargparse or tyro")."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body  # type: ignore[attr-defined]
        for node, nxt in zip(body, body[1:]):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def _converter(tp: Any, name: str) -> tuple[Callable[[str], Any], list[Any] | None]:
    """A string -> value parser for a field type, and its choices (for Literal)."""
    tp, optional = _unwrap_optional(tp)

    def maybe_none(fn: Callable[[str], Any]) -> Callable[[str], Any]:
        if not optional:
            return fn
        return lambda s: None if s.lower() in ("none", "null") else fn(s)

    if typing.get_origin(tp) is Literal:
        choices = list(typing.get_args(tp))
        kind = type(choices[0])
        return maybe_none(kind), choices
    if tp is bool:
        return maybe_none(parse_bool), None
    if tp in (int, float, str):
        return maybe_none(tp), None
    if typing.get_origin(tp) in (tuple, list):
        (item,) = {a for a in typing.get_args(tp) if a is not Ellipsis}
        return maybe_none(lambda s: tuple(item(v) for v in s.split(",") if v)), None
    raise TypeError(f"config field {name!r} has unsupported type {tp!r}")


def parse_bool(s: str) -> bool:
    v = s.strip().lower()
    if v in ("1", "true", "yes", "on"):
        return True
    if v in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {s!r}")


def _walk(cls: type, prefix: str = "", docs: bool = True) -> list[tuple[str, dataclasses.Field, Any, str]]:
    """(dotted name, field, type, doc) for every leaf field of ``cls``, depth first (docs '' unless ``docs``)."""
    out = []
    hints, doc_of = _hints(cls), field_docs(cls) if docs else {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out.extend(_walk(tp, f"{prefix}{f.name}.", docs))
        else:
            out.append((prefix + f.name, f, tp, doc_of.get(f.name, "")))
    return out


def add_config_arguments(parser: argparse.ArgumentParser, cls: type, docs: bool = True) -> None:
    """One ``--a.b_c`` (alias ``--a.b-c``) flag per leaf field of ``cls``; default ``SUPPRESS``; help text from
    the field docstrings when ``docs``."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    for dotted, f, tp, doc in _walk(cls, docs=docs):
        section = dotted.rsplit(".", 1)[0] if "." in dotted else ""
        group = groups.setdefault(section, parser.add_argument_group(section or "options") if section else parser)
        conv, choices = _converter(tp, dotted)
        default = f.default if f.default is not dataclasses.MISSING else None
        flags = [f"--{dotted}"]
        if "_" in dotted.rsplit(".", 1)[-1]:
            flags.append("--" + dotted.rsplit(".", 1)[0] + "." + dotted.rsplit(".", 1)[-1].replace("_", "-")
                         if "." in dotted else "--" + dotted.replace("_", "-"))  # fmt: skip
        shown = default if not isinstance(default, tuple) else ",".join(map(str, default))
        # a bare boolean flag (``--quick``) means true; ``--quick false`` still works
        bare = {"nargs": "?", "const": True} if _unwrap_optional(tp)[0] is bool else {}
        group.add_argument(
            *flags,
            dest=dotted,
            type=conv,
            choices=choices,
            default=argparse.SUPPRESS,
            metavar=None if choices else _metavar(tp),
            help=f"{doc} (default: {shown})",
            **bare,
        )


def _metavar(tp: Any) -> str:
    tp, _ = _unwrap_optional(tp)
    return {int: "INT", float: "FLOAT", str: "STR", bool: "BOOL"}.get(tp, "VALUE")


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a JSON (or TOML) config file into a nested dict; one clear error line on failure."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"config file {str(path)!r} does not exist")
    try:
        if path.suffix == ".toml":
            import tomllib

            return tomllib.loads(path.read_text(encoding="utf-8"))
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"config file {str(path)!r} is not valid {path.suffix.lstrip('.') or 'JSON'}: {e}") from None


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, Mapping):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[prefix + k] = v
    return out


def from_flat(cls: type[C], values: Mapping[str, Any]) -> C:
    """Build ``cls`` from dotted overrides on top of its defaults; unknown keys are an error."""
    known = {dotted for dotted, *_ in _walk(cls, docs=False)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown config key(s) for {cls.__name__}: {', '.join(unknown)}")
    return _build(cls, values, "")


def _build(cls: type, values: Mapping[str, Any], prefix: str) -> Any:
    hints = _hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            kwargs[f.name] = _build(tp, values, f"{prefix}{f.name}.")
        elif prefix + f.name in values:
            v = values[prefix + f.name]
            kwargs[f.name] = tuple(v) if isinstance(v, list) else v
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-ready nested dict of a config dataclass."""
    return dataclasses.asdict(cfg)


def from_dict(cls: type[C], d: Mapping[str, Any]) -> C:
    return from_flat(cls, flatten(d))


def diff(a: Any, b: Any) -> list[str]:
    """Human-readable differences between two configs (or nested dicts): ``model.hidden_size: 256 -> 512``."""
    fa = flatten(to_dict(a) if dataclasses.is_dataclass(a) else a)
    fb = flatten(to_dict(b) if dataclasses.is_dataclass(b) else b)
    return [f"{k}: {fa.get(k)!r} -> {fb.get(k)!r}" for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)]


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a mistake is one line (argparse prints the whole usage first: 14 lines for rnnkit train)."""

    def error(self, message: str) -> typing.NoReturn:
        hint = f"see {self.prog} --help"
        if message.startswith("unrecognized arguments:"):  # a typo: name the flag that was probably meant
            flags = [s for a in self._actions for s in a.option_strings]
            wrong = [w.split("=", 1)[0] for w in message.split(":", 1)[1].split() if w.startswith("--")]
            close = [m for w in wrong for m in difflib.get_close_matches(w, flags, n=1, cutoff=0.75)]
            hint = f"did you mean {', '.join(close)}? " + hint if close else hint
        self.exit(2, f"{self.prog}: error: {message} ({hint})\n")


def parse_config(
    cls: type[C],
    argv: Sequence[str] | None,
    *,
    prog: str,
    description: str = "",
    presets: Mapping[str, Mapping[str, Any]] | None = None,
    extra: Callable[[argparse.ArgumentParser], None] | None = None,
) -> tuple[C, argparse.Namespace]:
    """Parse ``argv`` into a ``cls`` instance (and the namespace, for ``extra`` non-config flags).

    Exits with status 2 and one ``error:`` line on a bad flag, bad file or a failed validation.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = OneLineParser(prog=prog, description=description)
    parser.add_argument("--config", metavar="FILE", help="JSON or TOML file of settings (flags override it)")
    if presets:
        parser.add_argument("--preset", choices=sorted(presets), help="start from a named set of settings")
    if extra is not None:
        extra(parser)
    add_config_arguments(parser, cls, docs=any(a in ("-h", "--help") for a in argv))
    ns = parser.parse_args(argv)
    known = {dotted for dotted, *_ in _walk(cls, docs=False)}
    values: dict[str, Any] = {}
    try:
        if presets and getattr(ns, "preset", None):
            values.update(flatten(presets[ns.preset]))
        if ns.config:
            values.update(flatten(load_config_file(ns.config)))
        values.update({k: v for k, v in vars(ns).items() if k in known})
        return from_flat(cls, values), ns
    except (ValueError, TypeError) as e:
        parser.error(str(e))
        raise  # unreachable: parser.error exits

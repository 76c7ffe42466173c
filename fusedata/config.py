"""The one config system of fusekit: YAML → typed dataclasses, did-you-mean, dotted overrides.

All three CLIs (``fusedata``, ``trainer``, ``evals``) describe their recipes as plain
dataclasses and build them with :func:`build`, which checks every key and type against the
dataclass's type hints and names the offending key in a :class:`FusekitError` (exit 2 in the
CLIs). ``key=value`` overrides from the command line are applied to the raw mapping first
(:func:`apply_overrides`), so an override is checked exactly like the file.

Supported hints: ``bool``, ``int``, ``float`` (an int or a YAML string like ``5e-7`` is
accepted), ``str``, ``Any``, ``Optional[X]`` / ``X | None``, ``list``/``list[X]``,
``tuple[X, ...]``, ``dict``/``dict[str, X]``, ``Literal[...]`` (a choice, with did-you-mean)
and nested dataclasses.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from .errors import FusekitError


def did_you_mean(value: str, known: typing.Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest known name, or an empty string."""
    near = difflib.get_close_matches(str(value), list(known), n=1)
    return f" (did you mean '{near[0]}'?)" if near else ""


def choice(value: Any, allowed: typing.Sequence[str], where: str) -> None:
    """Refuse a value outside ``allowed``, naming the nearest choice."""
    if value not in allowed:
        raise FusekitError(f"{where}: unknown value {value!r}{did_you_mean(value, allowed)}; "
                           f"expected one of {', '.join(map(str, allowed))}")


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", str(hint))


def _check_container(value: Any, hint: Any, origin: Any, where: str) -> Any:
    args = typing.get_args(hint)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise FusekitError(f"{where}: expected a list, got {value!r}")
        return [_check_type(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)] if args else list(value)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise FusekitError(f"{where}: expected a list, got {value!r}")
        item = args[0] if args else Any
        return tuple(_check_type(v, item, f"{where}[{i}]") for i, v in enumerate(value))
    if not isinstance(value, dict):
        raise FusekitError(f"{where}: expected a mapping, got {value!r}")
    if not args:
        return dict(value)
    return {str(k): _check_type(v, args[1], f"{where}.{k}") for k, v in value.items()}


def _check_type(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            return _check_type(value, args[0], where)
        for a in args:  # the first alternative that takes the value
            try:
                return _check_type(value, a, where)
            except FusekitError:
                continue
        raise FusekitError(f"{where}: expected {' or '.join(_type_name(a) for a in args)}, got {value!r}")
    if origin is typing.Literal:
        choice(value, typing.get_args(hint), where)
        return value
    if dataclasses.is_dataclass(hint):
        return build(hint, value, where)
    if hint is Any:
        return value
    if hint in (list, tuple, dict) or origin in (list, tuple, dict):
        return _check_container(value, hint, origin or hint, where)
    # bool is an int in Python; `max_tokens: true` is a typo, not 1.
    if isinstance(value, bool) and hint is not bool:
        raise FusekitError(f"{where}: expected {_type_name(hint)}, got {value!r}")
    if hint is float and isinstance(value, int):
        return float(value)
    if hint is float and isinstance(value, str):
        try:  # YAML reads 5e-7 (no dot) as a string
            return float(value)
        except ValueError:
            pass
    if not isinstance(value, hint):
        raise FusekitError(f"{where}: expected {_type_name(hint)}, got {value!r}")
    return value


def build(cls: type, raw: Any, where: str = "") -> Any:
    """An instance of dataclass ``cls`` from a mapping; unknown keys and wrong types are refused."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise FusekitError(f"{where or 'recipe'}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = [f for f in dataclasses.fields(cls) if f.init]
    names = [f.name for f in fields]
    unknown = [str(k) for k in raw if k not in names]
    if unknown:
        tip = did_you_mean(unknown[0], names) or f"; allowed: {', '.join(names)}"
        keys = "key " if len(unknown) == 1 else "keys "
        raise FusekitError(f"{where or 'recipe'}: unknown {keys}{', '.join(repr(k) for k in unknown)}{tip}")
    required = [f.name for f in fields if f.name not in raw and f.default is dataclasses.MISSING
                and f.default_factory is dataclasses.MISSING]
    if required:
        raise FusekitError(f"{where or 'recipe'}: needs {', '.join(repr(k) for k in required)}")
    kwargs = {key: _check_type(value, hints[key], f"{where}.{key}" if where else key) for key, value in raw.items()}
    return cls(**kwargs)


def _parse_value(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(raw: dict[str, Any], overrides: typing.Iterable[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides (values parsed as YAML) to a raw recipe mapping.

    A numeric part indexes a list: ``models.0.sampling.n=4``.
    """
    out = json.loads(json.dumps(raw))
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise FusekitError(f"override {item!r}: expected key=value, e.g. loss.beta=0.1")
        node: Any = out
        *parents, last = key.strip().split(".")
        for p in parents:
            node = _child(node, p, item)
        if isinstance(node, list):
            node[_index(node, last, item)] = _parse_value(value)
        else:
            node[last] = _parse_value(value)
    return out


def _index(node: list, part: str, item: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise FusekitError(f"override {item!r}: '{part}' is not an index of a list of {len(node)}")
    return int(part)


def _child(node: Any, part: str, item: str) -> Any:
    if isinstance(node, list):
        return node[_index(node, part, item)]
    if not isinstance(node, dict):
        raise FusekitError(f"override {item!r}: {part} is not a section")
    child = node.setdefault(part, {})
    if child is None:
        child = node[part] = {}
    if not isinstance(child, (dict, list)):
        raise FusekitError(f"override {item!r}: {part} is not a section")
    return child


def load_yaml(path: str | Path) -> dict[str, Any]:
    """A recipe file's mapping; a missing file, bad YAML or a non-mapping is a FusekitError."""
    p = Path(path)
    if not p.is_file():
        raise FusekitError(f"recipe file not found: {path}")
    try:
        raw = yaml.safe_load(p.read_text("utf-8"))
    except yaml.YAMLError as e:
        raise FusekitError(f"{p}: not valid YAML: {e}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise FusekitError(f"{p}: a recipe is a YAML mapping, got {type(raw).__name__}")
    return raw

"""Typed options: dataclasses built from user mappings and checked in one place.

Every option group of geodd (a matcher's options, GeoDM's groups, IDM's pool, the generative pipeline) is a
dataclass. ``from_mapping(cls, {...})`` builds one from a flat or nested mapping (a CLI ``-o key=value`` list, a
notebook setting, a stored record) and checks each value against the field's annotation: its type (a bool is not
a number), finiteness, and the choices of a ``Literal``. Each dataclass may add range checks in a ``check()``
method. A bad key or value is a one-line ``GeoddError`` that lists the valid keys with their types.

Groups: a field whose type is itself an options dataclass is a group. A flat key that names a field of exactly
one group goes to that group (``{"lr": 0.01}`` sets ``optim.lr`` of GeoDM), so the CLI needs no dotted names;
``"group.key"`` and a nested mapping ``{"optim": {"lr": 0.01}}`` work too. ``overrides(obj)`` is the inverse:
the non-default values as a flat mapping, what configs store and hash.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any, Literal, Mapping, TypeVar, Union, get_args, get_origin

from . import GeoddError

T = TypeVar("T")


def is_options(cls: Any) -> bool:
    return dataclasses.is_dataclass(cls) and isinstance(cls, type)


@typing.no_type_check
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _type_name(tp: Any) -> str:
    origin, args = get_origin(tp), get_args(tp)
    if origin is Literal:
        return "one of " + "|".join(map(str, args))
    if origin in (Union, getattr(__import__("types"), "UnionType", Union)):
        return " or ".join(_type_name(a) for a in args)
    if origin is tuple:
        return f"tuple of {_type_name(args[0])}" if args else "tuple"
    if tp is type(None):
        return "None"
    return getattr(tp, "__name__", str(tp))


def describe(cls: type) -> str:
    """``"k: float, lam: float, ..."``: the valid keys of ``cls`` (groups flattened) with their types.
    Not called in a notebook; used by ``geodd.options``."""
    parts = []
    for name, tp in _hints(cls).items():
        if name.startswith("_"):
            continue
        if is_options(tp):
            parts.append(describe(tp))
        else:
            parts.append(f"{name}: {_type_name(tp)}")
    return ", ".join(parts)


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """``value`` checked against annotation ``tp`` (ints widen to float; lists become tuples)."""
    origin, args = get_origin(tp), get_args(tp)
    if tp is Any:
        return value
    if origin is Literal:
        if value not in args:
            raise GeoddError(f"{where} must be one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if origin in (Union, getattr(__import__("types"), "UnionType", Union)):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except GeoddError as exc:
                errors.append(str(exc))
        raise GeoddError(f"{where} must be {_type_name(tp)}, got {value!r}")
    if origin is tuple:
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise GeoddError(f"{where} must be {_type_name(tp)}, got {value!r}")
        item = args[0] if args else Any
        if len(args) > 1 and args[1] is not Ellipsis:  # fixed-length tuple
            if len(value) != len(args):
                raise GeoddError(f"{where} must have {len(args)} entries, got {value!r}")
            return tuple(_coerce(v, a, where) for v, a in zip(value, args))
        return tuple(_coerce(v, item, where) for v in value)
    if tp is bool:
        if not isinstance(value, bool):
            raise GeoddError(f"{where} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise GeoddError(f"{where} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise GeoddError(f"{where} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise GeoddError(f"{where} must be finite, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise GeoddError(f"{where} must be a string, got {value!r}")
        return value
    if isinstance(tp, type) and not isinstance(value, tp):
        raise GeoddError(f"{where} must be {_type_name(tp)}, got {value!r}")
    return value


def _route(cls: type, mapping: Mapping[str, Any], what: str) -> dict[str, dict[str, Any] | Any]:
    """Split a flat/dotted/nested mapping into ``{field: value}`` and ``{group: {field: value}}``."""
    hints = _hints(cls)
    groups = {n: tp for n, tp in hints.items() if is_options(tp)}
    owners: dict[str, list[str]] = {}
    for g, tp in groups.items():
        for f in _hints(tp):
            owners.setdefault(f, []).append(g)
    out: dict[str, Any] = {g: {} for g in groups}
    for key, value in mapping.items():
        key = str(key)
        if "." in key:
            g, _, sub = key.partition(".")
            if g not in groups:
                raise GeoddError(f"unknown {what} option {key!r}; valid: {describe(cls) or 'none (it takes no options)'}")
            out[g][sub] = value
        elif key in groups:
            if not isinstance(value, Mapping):
                raise GeoddError(f"{what} option {key!r} is a group; give a mapping or set its keys")
            out[key].update(value)
        elif key in hints:
            out[key] = value
        elif len(owners.get(key, [])) == 1:
            out[owners[key][0]][key] = value
        elif len(owners.get(key, [])) > 1:
            raise GeoddError(f"{what} option {key!r} is ambiguous; write one of "
                             f"{', '.join(g + '.' + key for g in owners[key])}")
        else:
            raise GeoddError(f"unknown {what} option {key!r}; valid: {describe(cls) or 'none (it takes no options)'}")
    return out


def from_mapping(cls: type[T], mapping: Mapping[str, Any] | T | None = None, *, what: str | None = None) -> T:
    """An instance of options dataclass ``cls`` from ``mapping`` (defaults for missing keys), type- and
    range-checked; an instance of ``cls`` is checked and returned as it is.
    Used in notebooks 02 (02_hdd_pruning), 03 (03_csdm_amplitude_phase), 04 (04_geodm_product_space), 05
    (05_ot_generative) through their study modules."""
    what = what or cls.__name__
    if isinstance(mapping, cls):
        check(mapping, what=what)
        return mapping
    if mapping is not None and not isinstance(mapping, Mapping):
        raise GeoddError(f"{what} options must be a mapping of key=value, got {type(mapping).__name__}")
    hints = _hints(cls)
    routed = _route(cls, mapping or {}, what)
    kwargs = {}
    for name, value in routed.items():
        tp = hints[name]
        if is_options(tp):
            kwargs[name] = from_mapping(tp, value, what=f"{what}.{name}")
        else:
            kwargs[name] = _coerce(value, tp, f"{what} option {name!r}")
    obj = cls(**kwargs)
    check(obj, what=what)
    return obj


def check(obj: Any, *, what: str | None = None) -> None:
    """Run ``obj.check()`` (range rules) and those of its groups; errors become one-line ``GeoddError``s.
    Not called in a notebook; used by ``geodd.options``."""
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if is_options(type(v)):
            check(v, what=f"{what or type(obj).__name__}.{f.name}")
    rule = getattr(obj, "check", None)
    if callable(rule):
        try:
            rule()
        except (ValueError, TypeError, AssertionError) as exc:
            if isinstance(exc, GeoddError):
                raise
            raise GeoddError(f"{what or type(obj).__name__}: {exc}") from None


def check_types(obj: Any, *, skip: tuple[str, ...] = ()) -> None:
    """Each plain field of dataclass ``obj`` against its annotation (type, a bool is not a number, finiteness,
    ``Literal`` choices), without converting it; errors read ``"<field> must be ..."``. Used by
    ``geodd.distill.DistillConfig.check``; groups and ``skip`` are left to their own checks."""
    for name, tp in _hints(type(obj)).items():
        if name not in skip and not is_options(tp):
            _coerce(getattr(obj, name), tp, name)


def overrides(obj: Any) -> dict[str, Any]:
    """The values of ``obj`` that differ from its class defaults, as a flat JSON-able mapping (groups as
    ``group.key``); ``from_mapping(type(obj), overrides(obj))`` rebuilds ``obj``.
    Used in notebook 05 (05_ot_generative) through its study module."""
    out: dict[str, Any] = {}
    default = type(obj)()
    for f in dataclasses.fields(obj):
        v, d = getattr(obj, f.name), getattr(default, f.name)
        if is_options(type(v)):
            out.update({f"{f.name}.{k}": sub for k, sub in overrides(v).items()})
        elif v != d:
            out[f.name] = list(v) if isinstance(v, tuple) else v
    return out


def require(condition: bool, message: str) -> None:
    """A range rule inside ``check()``: raise ``GeoddError(message)`` unless ``condition``.
    Used in notebooks 02 (02_hdd_pruning), 03 (03_csdm_amplitude_phase), 04 (04_geodm_product_space), 05
    (05_ot_generative) through their study modules."""
    if not condition:
        raise GeoddError(message)


__all__ = ["check", "check_types", "describe", "from_mapping", "is_options", "overrides", "require"]

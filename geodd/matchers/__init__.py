"""Distribution-matching objectives, one file per method (see ``base.Matcher`` for the contract).

``MATCHERS`` maps each method name to its matcher class and its typed options class; ``matcher_options(method,
mapping)`` validates a method's options (``geodd.options.from_mapping``) and ``build_matcher(method, options)``
constructs the matcher. The engine calls the two in that order and stores ``geodd.options.overrides(options)`` in
run configs. The methods are documented in ``docs/methods/`` (``dm.md``, ``hdd.md``, ``sdd_csdm.md``,
``geodm.md``).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import GeoddError
from ..options import from_mapping
from .base import Matcher
from .dm import DMMatcher, DMOptions, dm_loss
from .geodm import GeoDMMatcher, GeoDMOptions
from .hdd import HDDMatcher, HDDOptions, hdd_loss
from .sdd import (CSDMMatcher, CSDMOptions, SDDMatcher, SDDOptions, class_alphas, sample_frequencies, sdd_loss,
                  sdd_terms)

#: method name -> (matcher class, options class)
MATCHERS: dict[str, tuple[type[Matcher], type]] = {
    "dm": (DMMatcher, DMOptions),
    "hdd": (HDDMatcher, HDDOptions),
    "sdd": (SDDMatcher, SDDOptions),
    "csdm": (CSDMMatcher, CSDMOptions),
    "geodm": (GeoDMMatcher, GeoDMOptions),
}


def _entry(method: str) -> tuple[type[Matcher], type]:
    if method not in MATCHERS:
        raise GeoddError(f"unknown method {method!r}; choose one of {', '.join(MATCHERS)}")
    return MATCHERS[method]


def matcher_options(method: str, options: Mapping[str, Any] | Any | None = None) -> Any:
    """The validated options object of ``method`` from a flat/dotted/nested mapping or an options object (checked
    as it is); one-line ``GeoddError`` for an unknown method, key, type or range. Shown in notebook 06
    (06_results), through the engine's configs."""
    _, options_class = _entry(method)
    return from_mapping(options_class, options, what=method)


def build_matcher(method: str, options: Mapping[str, Any] | Any | None = None, **overrides) -> Matcher:
    """The matcher of ``method`` (dm, hdd, sdd, csdm, geodm) built from ``options`` (an options object or a
    mapping; defaults when None) with keyword ``overrides`` on top. Shown in notebook 06 (06_results), through
    the engine."""
    matcher_class, _ = _entry(method)
    return matcher_class(options, **overrides)


__all__ = ["Matcher", "MATCHERS", "matcher_options", "build_matcher", "DMMatcher", "DMOptions", "dm_loss",
           "HDDMatcher", "HDDOptions", "hdd_loss", "SDDMatcher", "CSDMMatcher", "SDDOptions", "CSDMOptions",
           "sample_frequencies", "sdd_terms", "sdd_loss", "class_alphas", "GeoDMMatcher", "GeoDMOptions"]

"""Distribution-matching objectives, one file per method (see ``base.Matcher`` for the contract).

``build_matcher(method, **options)`` constructs a matcher by its CLI name.
"""
from __future__ import annotations

from .. import GeoddError
from .base import Matcher
from .dm import DMMatcher, dm_loss

#: CLI name -> matcher class. Each method module registers itself here.
MATCHERS: dict[str, type[Matcher]] = {"dm": DMMatcher}


def build_matcher(method: str, **options) -> Matcher:
    """The matcher for ``method`` (dm, hdd, sdd, csdm, geodm) with its keyword options."""
    if method not in MATCHERS:
        raise GeoddError(f"unknown method {method!r}; choose one of {', '.join(sorted(MATCHERS))}")
    return MATCHERS[method](**options)


__all__ = ["Matcher", "MATCHERS", "build_matcher", "DMMatcher", "dm_loss"]

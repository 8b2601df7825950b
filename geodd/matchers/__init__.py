"""Distribution-matching objectives, one file per method (see ``base.Matcher`` for the contract).

``build_matcher(method, **options)`` constructs a matcher by its CLI name.
"""
from __future__ import annotations

from .. import GeoddError
from .base import Matcher
from .dm import DMMatcher, dm_loss
from .hdd import HDDMatcher, hdd_loss
from .sdd import CSDMMatcher, SDDMatcher, class_alphas, sample_frequencies, sdd_loss, sdd_terms
from .geodm import GeoDMMatcher

#: CLI name -> matcher class. Each method module registers itself here.
MATCHERS: dict[str, type[Matcher]] = {"dm": DMMatcher}
MATCHERS.update({"hdd": HDDMatcher})
MATCHERS.update({"sdd": SDDMatcher, "csdm": CSDMMatcher})
MATCHERS.update({"geodm": GeoDMMatcher})


def build_matcher(method: str, **options) -> Matcher:
    """The matcher for ``method`` (dm, hdd, sdd, csdm, geodm) with its keyword options."""
    if method not in MATCHERS:
        raise GeoddError(f"unknown method {method!r}; choose one of {', '.join(sorted(MATCHERS))}")
    return MATCHERS[method](**options)


__all__ = ["Matcher", "MATCHERS", "build_matcher", "DMMatcher", "dm_loss"]
__all__ += ["HDDMatcher", "hdd_loss"]
__all__ += ["SDDMatcher", "CSDMMatcher", "sample_frequencies", "sdd_terms", "sdd_loss", "class_alphas"]
__all__ += ["GeoDMMatcher"]

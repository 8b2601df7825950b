"""Geometry on geoopt: the Lorentz model, GeoDM's product factors, geometry diagnostics and their constants.

``constants`` holds every eps/clamp of the manifold maths; ``lorentz`` the hyperboloid maths of HDD (lifts, the one
closed-form centroid, distances, Poincare maps, the weighting probe); ``product`` the factor spaces of GeoDM;
``diagnostics`` delta-hyperbolicity, quadric fits and embeddings on the model spaces. Everything public is
re-exported here, so ``from geodd.geometry import lorentz_centroid, lift, delta_hyperbolicity`` works. Note:
the attribute ``geodd.geometry.lorentz`` is the function ``lorentz(k)`` (geoopt's manifold), which shadows the
submodule; read the submodule's names with ``from geodd.geometry.lorentz import ...``. Shown in notebooks 01
(01_manifold_embeddings), 02 (02_hdd_pruning) and 04 (04_geodm_product_space).
"""
from __future__ import annotations

from . import constants, diagnostics, lorentz as lorentz_model, product
from .constants import *  # noqa: F401,F403
from .diagnostics import *  # noqa: F401,F403
from .lorentz import *  # noqa: F401,F403
from .product import *  # noqa: F401,F403

__all__ = [*constants.__all__, *lorentz_model.__all__, *product.__all__, *diagnostics.__all__]

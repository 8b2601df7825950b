"""Every eps, floor and clamp of geodd's manifold and matching maths, in one place.

Each constant says what it guards. Modules import them from here (``geodd.geometry`` re-exports them); none
defines its own copy. Values are unchanged from where they lived before, except ``CENTROID_EPS`` (one Lorentz
centroid, the HDD release's 1e-8; GeoDM used 1e-15) and ``SERIES_EPS`` (one threshold for the limits of
``t / sinh t`` and ``t / tanh t``). Shown in notebook 01 (01_manifold_embeddings) and notebook 02
(02_hdd_pruning) through the functions that use them.
"""
from __future__ import annotations

# ---- norms, square roots, divisions ------------------------------------------------------------------------------

#: floor under a vector norm before dividing by it (the direction of a zero vector; a zero feature or axis)
NORM_EPS = 1e-12
#: floor under a non-negative quantity before its square root, so the root's gradient stays finite at zero
#: (SDD's per-frequency term in NCFM's square-rooted form, NCFM's constant; the "euclidean" OT cost)
SQRT_EPS = 1e-12
#: |t| below which ``t / sinh t`` and ``t / tanh t`` take their limit 1 (their error there is < t^2 / 3 ~ 3e-13)
SERIES_EPS = 1e-6

# ---- Lorentz model -----------------------------------------------------------------------------------------------

#: floor under ``|<m, m>_L|`` in the closed-form Lorentz centroid (the HDD release's 1e-8; it only bites for
#: k < 1e-8, since the mean of points on the sheet has ``|<m, m>_L| >= k``)
CENTROID_EPS = 1e-8
#: ``lorentz_distance`` clamps its arcosh argument at ``1 + LORENTZ_DIST_EPS`` and continues linearly below, so
#: d(x, x) = 0 and the gradient stays bounded (distances below ~1.4e-6 sqrt(k) are smoothed)
LORENTZ_DIST_EPS = 1e-12
#: Poincare points are kept at norm <= 1 - POINCARE_BOUNDARY_EPS before mapping back to the hyperboloid
POINCARE_BOUNDARY_EPS = 1e-7
#: geoopt 0.5.0 as vendored in the HDD release clamps ``theta = |u|_L / sqrt(k)`` at this value inside
#: ``expmap0`` (pip geoopt 0.5.1 has no clamp); ``lift(clamp="release")`` re-creates it
RELEASE_EXP_MAX_THETA = 10.0
#: our float64 guard on ``theta`` for the exp lift: beyond ~15 the ambient coordinates (~cosh theta) square to
#: ~1e13 and the Minkowski form -t^2 + |s|^2 loses its last digits to cancellation
SAFE_EXP_MAX_THETA = 15.0

# ---- GeoDM's product space ---------------------------------------------------------------------------------------

#: |c| >= C_FLOOR for GeoDM's curved factors (softplus floor), so a learnt curvature can never change sign
C_FLOOR = 1e-4
#: floor under squared chord lengths before their square root (pairwise spherical distances)
CHORD_EPS = 1e-30
#: floor under a mean squared distance before dividing by it (GeoDM's prototype logits and distortion)
DIST_FLOOR = 1e-12
#: floor under the temperature of GeoDM's nearest-prototype loss
TAU_FLOOR = 1e-3
#: floor under the RMS feature scale that standardises GeoDM's head input
FEATURE_SCALE_FLOOR = 1e-12

# ---- spectral matching and optimal transport ---------------------------------------------------------------------

#: floor on ``|phi|^2`` before its square root in SDD, so ``d|phi|`` stays finite where a CF vanishes
CF_MAG_EPS = 1e-24
#: floor under the OT cost normaliser s (an all-zero cost matrix keeps s = this floor)
COST_NORM_FLOOR = 1e-30

__all__ = ["NORM_EPS", "SQRT_EPS", "SERIES_EPS", "CENTROID_EPS", "LORENTZ_DIST_EPS", "POINCARE_BOUNDARY_EPS",
           "RELEASE_EXP_MAX_THETA", "SAFE_EXP_MAX_THETA", "C_FLOOR", "CHORD_EPS", "DIST_FLOOR", "TAU_FLOOR",
           "FEATURE_SCALE_FLOOR", "CF_MAG_EPS", "COST_NORM_FLOOR"]

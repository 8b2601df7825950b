"""geodd.options: typed options built from mappings, with one-line errors that list the valid keys."""
from dataclasses import dataclass, field
from typing import Literal

import pytest

from geodd import GeoddError
from geodd.options import describe, from_mapping, overrides, require


@dataclass
class Optim:
    lr: float = 0.01
    steps: int = 1

    def check(self):
        require(self.lr > 0, f"lr must be positive, got {self.lr}")


@dataclass
class Geometry:
    k: float = 1.0
    factors: tuple[str, ...] = ("E", "H")
    mode: Literal["a", "b"] = "a"
    limit: int | None = None


@dataclass
class Grouped:
    geometry: Geometry = field(default_factory=Geometry)
    optim: Optim = field(default_factory=Optim)
    weight: float = 1.0


def test_flat_dotted_and_nested_keys_route_to_their_group():
    a = from_mapping(Grouped, {"lr": 0.1, "k": 2, "geometry.mode": "b", "factors": ["E"]})
    b = from_mapping(Grouped, {"optim": {"lr": 0.1}, "geometry": {"k": 2.0, "mode": "b", "factors": ("E",)}})
    assert a == b
    assert a.geometry.k == 2.0 and isinstance(a.geometry.k, float) and a.optim.lr == 0.1


def test_overrides_round_trip_and_omit_defaults():
    a = from_mapping(Grouped, {"lr": 0.1, "weight": 3})
    assert overrides(a) == {"optim.lr": 0.1, "weight": 3.0}
    assert from_mapping(Grouped, overrides(a)) == a
    assert overrides(Grouped()) == {}


@pytest.mark.parametrize("bad, message", [
    ({"zz": 1}, "unknown Grouped option 'zz'; valid: k: float"),
    ({"k": "abc"}, "must be a number"),
    ({"k": float("inf")}, "must be finite"),
    ({"k": float("nan")}, "must be finite"),
    ({"k": True}, "must be a number"),
    ({"steps": 1.5}, "must be an integer"),
    ({"mode": "c"}, "must be one of 'a', 'b'"),
    ({"limit": 1.5}, "must be int or None"),
    ({"factors": "EH"}, "must be tuple of str"),
    ({"lr": -1}, "lr must be positive"),
    ({"geometry": 3}, "is a group"),
])
def test_bad_values_are_one_line_errors(bad, message):
    with pytest.raises(GeoddError, match=message.replace("(", r"\(")) as err:
        from_mapping(Grouped, bad)
    assert "\n" not in str(err.value)


def test_describe_lists_every_key_with_its_type():
    text = describe(Grouped)
    for part in ("k: float", "factors: tuple of str", "mode: one of a|b", "lr: float", "steps: int", "weight: float"):
        assert part in text


def test_a_non_mapping_is_refused():
    with pytest.raises(GeoddError, match="must be a mapping"):
        from_mapping(Grouped, [("k", 1)])

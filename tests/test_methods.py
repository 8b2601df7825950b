"""geodd.methods: one definition per method variant, each value with its provenance."""
import pytest

from geodd import GeoddError, methods, profiles
from geodd.matchers import MATCHERS


@pytest.mark.parametrize("name", methods.names())
def test_every_setting_has_a_provenance(name):
    v = methods.get(name)
    if v.schedule == "generative":
        assert v.method == "ot-gen"
        with pytest.raises(GeoddError, match="generative pipeline"):
            methods.config(name, profiles.get("smoke"), ipc=1)
    else:
        assert v.method in MATCHERS and v.schedule in ("dm", "idm")
    for ipc in (None, 1, 10, 50):
        for path, s in v.values(ipc).items():
            assert s.source.split(":")[0] in ("release", "paper", "ours"), (name, path, s.source)


def test_release_settings_of_the_hdd_and_idm_variants():
    """The release's values (HDD's command.txt and main_DM.py, IDM's command.txt), not a notebook's copy."""
    hdd = methods.get("IDM+HDD")
    assert hdd.values(1)["matcher.k"].value == 2.4 and hdd.values(1)["matcher.lam"].value == 100.0
    assert hdd.values(1)["lr_img"].value == 0.5 and hdd.values(10)["lr_img"].value == 1.0
    assert methods.get("IDM").values()["idm.ce_weight"].value == 50.0
    assert methods.get("DM+HDD").values()["matcher.lam"].value == 20.0


@pytest.mark.parametrize("profile", profiles.PROFILE_NAMES)
@pytest.mark.parametrize("name", ["DM", "IDM", "DM+HDD", "IDM+HDD", "SDD", "CSDM"])
def test_config_combines_profile_sizes_with_variant_settings(profile, name):
    p = profiles.get(profile)
    v = methods.get(name)
    cfg = methods.config(name, p, ipc=1, seed=3, **({"lr_img": 0.7} if v.calibrated_lr else {}))
    assert (cfg.method, cfg.schedule, cfg.seed, cfg.iterations, cfg.batch_real) == \
        (v.method, v.schedule, 3, p.iterations, p.batch_real)
    for path, s in v.values(1).items():
        group, _, key = path.partition(".")
        got = getattr(getattr(cfg, group), key) if key else getattr(cfg, group)
        assert got == (0.7 if s.value == methods.EQUAL_FIRST_STEP else s.value), (name, path)
    if v.schedule == "idm":
        for key, size in p.idm_pool.items():
            assert getattr(cfg.idm, key) == size


def test_an_ablation_overrides_one_setting_and_keeps_the_rest():
    cfg = methods.config("IDM+HDD", profiles.get("smoke"), ipc=1, matcher={"lam": 5.0})
    assert cfg.matcher.lam == 5.0 and cfg.matcher.k == 2.4


def test_calibrated_learning_rate_must_be_given():
    with pytest.raises(GeoddError, match="calibrated"):
        methods.config("GeoDM", profiles.get("smoke"), ipc=1)
    assert methods.config("GeoDM", profiles.get("smoke"), ipc=1, lr_img=3.0).lr_img == 3.0


def test_unknown_variant_lists_the_known_ones():
    with pytest.raises(GeoddError, match="choose one of DM, IDM"):
        methods.get("DM++")


def test_table_has_a_row_per_setting():
    t = methods.table()
    assert set(t.variant) == set(methods.names())
    assert (t.source != "").all()

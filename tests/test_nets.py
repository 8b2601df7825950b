import pytest
import torch

from geodd import GeoddError
from geodd.nets import ARCHITECTURES, ConvNet, get_network, make_network


def test_convnet_embedding_is_2048_for_28x28_and_32x32():
    assert ConvNet(1, 10, (28, 28)).embed(torch.zeros(2, 1, 28, 28)).shape == (2, 2048)
    assert ConvNet(3, 10, (32, 32)).embed(torch.zeros(2, 3, 32, 32)).shape == (2, 2048)


def test_convnet_parameter_count_matches_dc_arithmetic():
    # conv1 3*128*9+128, conv2/conv3 128*128*9+128 each, three GroupNorms 2*128, FC 2048*10+10
    expected = 3584 + 2 * 147584 + 3 * 256 + 20490
    assert sum(p.numel() for p in ConvNet(3, 10, (32, 32)).parameters()) == expected


def test_convnet_instance_norm_is_per_sample():
    net = ConvNet(1, 10, (28, 28)).eval()
    x = torch.randn(6, 1, 28, 28)
    together = net.embed(x)
    alone = torch.cat([net.embed(x[i:i + 1]) for i in range(6)])
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("channels,size", [(1, (28, 28)), (3, (32, 32))])
def test_zoo_shapes(arch, channels, size):
    net = get_network(arch, channels, 10, size)
    x = torch.randn(2, channels, *size)
    assert net(x).shape == (2, 10)
    assert net.embed(x).shape == (2, net.embed_dim)


@pytest.mark.parametrize("name,attr,value", [("convnetD4", "features", 4), ("ConvNetW64", "embed_dim", 64 * 16)])
def test_convnet_variants(name, attr, value):
    net = get_network(name, 3, 10, (32, 32))
    if attr == "features":
        assert sum(isinstance(m, torch.nn.Conv2d) for m in net.features) == value
    else:
        assert net.embed_dim == value


def test_make_network_is_seeded_and_leaves_global_rng_alone():
    state = torch.get_rng_state()
    a = make_network("convnet", 1, 10, (28, 28), seed=3)
    b = make_network("convnet", 1, 10, (28, 28), seed=3)
    c = make_network("convnet", 1, 10, (28, 28), seed=4)
    assert torch.equal(torch.get_rng_state(), state)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(next(a.parameters()), next(c.parameters()))


def test_unknown_architecture_is_a_clear_error():
    with pytest.raises(GeoddError, match="unknown architecture"):
        get_network("transformer", 1, 10, (28, 28))

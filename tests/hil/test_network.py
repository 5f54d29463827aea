import numpy as np
import pytest
from pydantic import ValidationError

from hil.errors import ConfigError
from hil.network import Network, NetworkSpec
from tests.networks import small_spec


def test_sizes_and_node_order():
    net = Network(NetworkSpec(inputs=4, hidden=[3], outputs=2, bias_voltages=[1.0, -1.0]))
    assert net.n_input_sources == 8
    # sources: 8 inputs + 2 bias per tile (2 tiles) ; free: 3 hidden + 4 outputs
    assert net.n_sources == 12 and net.n_nodes == 19
    assert net.tiles[0].shape == (10, 3) and net.tiles[1].shape == (5, 4)
    assert net.n_devices == 30 + 20


def test_device_addresses_round_trip(small_network):
    net = small_network
    for device in range(net.n_devices):
        assert net.device_id(*net.device_address(device)) == device
    assert len(set(map(net.device_address, range(net.n_devices)))) == net.n_devices


def test_encode_inputs_and_outputs():
    net = Network(NetworkSpec(inputs=2, hidden=[2], outputs=2, input_gain=2.0))
    v = net.encode_inputs(np.array([[0.5, 1.0]]))
    np.testing.assert_allclose(v, [[1.0, 2.0, -1.0, -2.0]])
    volts = np.zeros((1, net.n_nodes))
    volts[0, net.output_nodes] = [0.3, 0.1, -0.2, 0.2]
    np.testing.assert_allclose(net.outputs(volts), [[0.2, -0.4]])
    with pytest.raises(ConfigError, match=r"shape \(batch, 2\)"):
        net.encode_inputs(np.zeros((1, 3)))


def test_energy_weights_follow_amplifiers():
    net = Network(small_spec(amplifier=4.0))
    weights = [t.weight for t in net.tiles]
    assert weights == [1.0, 1 / 16, 1 / 256]
    assert net.output_weight == 1 / 256


@pytest.mark.parametrize(
    "change, field",
    [
        ({"g_min": -1e-6}, "g_min"),
        ({"g_min": 1e-5, "g_max": 1e-6}, "g_min"),
        ({"hidden": [4, 0]}, "hidden"),
        ({"inputs": 0}, "inputs"),
        ({"diode": {"v_low": 1.0, "v_high": 0.5}}, "v_low"),
        ({"diode": {"model": "shockley", "v_low": 0.2, "v_high": 0.2}}, "v_low"),
        ({"amplifier_gain": -2.0}, "amplifier_gain"),
    ],
)
def test_bad_specs_name_the_field(change, field):
    params = {"inputs": 4, "outputs": 2, **change}
    with pytest.raises(ValidationError, match=field):
        NetworkSpec(**params)


def test_shockley_rails_may_cross_ideal_ones_may_not():
    crossed = {"v_low": 0.15, "v_high": -0.15}
    assert NetworkSpec(inputs=4, outputs=2, diode={"model": "shockley", **crossed})
    with pytest.raises(ValidationError, match="Shockley diodes may cross"):
        NetworkSpec(inputs=4, outputs=2, diode={"model": "ideal", **crossed})

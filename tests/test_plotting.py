"""Figures: one colour per method, never two methods alike; seed-aggregated bands."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from lib import plotting  # noqa: E402


@pytest.fixture(autouse=True)
def fresh_colours(monkeypatch):
    monkeypatch.setattr(plotting, "_COLORS", {})


def test_no_two_names_share_a_colour_until_the_palette_is_used_up():
    # notebook 04's arms: known methods and our own labels, which used to wrap onto known slots
    names = ["fedavg", "fedavgm", "fedprox", "fednova", "fedexp", "fedadam", "fedyogi", "fedecado", "adaptive",
             "adaptive v1", "adaptive (window)", "v1 + window", "v1 + window + ECCO dt", "fedrevive", "fedasync_const"]
    pal = plotting.palette(names)
    assert len(set(pal.values())) == len(names)
    assert plotting.palette(["fedavg"]) == {"fedavg": pal["fedavg"]}            # stable within the process
    assert plotting.color("adaptive v1") == pal["adaptive v1"]


def test_known_methods_keep_their_slot_whatever_the_order():
    a = plotting.palette(["my arm", "fedavg"])["fedavg"]
    plotting._COLORS.clear()
    b = plotting.palette(["fedavg", "my arm"])["fedavg"]
    assert a == b


def test_mean_band_averages_x_and_y_over_seeds():
    df = pd.DataFrame({"method": "m", "seed": [0, 0, 1, 1, 2, 2], "round": [1, 2] * 3,
                       "grad_evals": [10, 20, 12, 22, 14, 24], "accuracy": [0.1, 0.5, 0.2, 0.6, 0.3, 0.7]})
    fig, ax = plt.subplots()
    plotting.mean_band(ax, df, "grad_evals", "accuracy", "method", ["m"])
    line = ax.get_lines()[0]
    assert np.allclose(line.get_xdata(), [12, 22]) and np.allclose(line.get_ydata(), [0.2, 0.6])
    band = ax.collections[0].get_paths()[0].vertices[:, 1]
    half = 0.1 * 4.302653 / np.sqrt(3)                     # sd 0.1, t(0.975, 2) = 4.3027
    assert band.max() == pytest.approx(0.6 + half, rel=1e-4) and band.min() == pytest.approx(0.2 - half, rel=1e-4)
    plt.close(fig)

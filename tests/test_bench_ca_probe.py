"""bench/ca_probe.py: CA's views are what G computes (c = μ + σ·ε with the seed's ε, dfgan's text scale applied),
the noise statistics are golden, and the study end to end on a tiny trained run (its text row is the encoder probe
of tools/evaluation/probe.py on the same captions)."""
import numpy as np
import pytest

from bench import ca_probe

TOL = 1e-5


def test_noise_stats_golden():
    mu = np.array([[0.0, 1.0], [2.0, -1.0]], np.float32)
    logvar = np.array([[0.0, np.log(4.0)], [0.0, 0.0]], np.float32)
    got = ca_probe.noise_stats({"mu": mu, "logvar": logvar})
    # σ: (1 + 2 + 1 + 1) / 4; μ spread: std over rows per dim (1, 1); KL: (0 + 0.5(4 + 1 - 1 - ln 4) + 2 + 0.5) / 4
    assert got["sigma"] == pytest.approx(1.25)
    assert got["mu_spread"] == pytest.approx(1.0)
    assert got["kl_per_dim"] == pytest.approx((0.5 * (4.0 - np.log(4.0)) + 2.5) / 4, rel=1e-6)


@pytest.mark.parametrize("arch", ["stackgan", "dfgan"])
def test_views_are_what_the_generator_computes(arch):
    import keras

    from gan import dfgan, stackgan

    build = {"stackgan": stackgan.build_generator, "dfgan": dfgan.build_generator}[arch]
    keras.utils.set_random_seed(0)
    g = build(text_dim=16, z_dim=8, c_dim=4, ngf=8)
    vectors = np.random.default_rng(1).standard_normal((5, 16)).astype(np.float32)
    views = ca_probe.ca_views(g, vectors, seed=3, batch=2)  # batches of 2: the last one short
    scale = dfgan.text_scale(16) if arch == "dfgan" else 1.0
    eps = np.random.default_rng(3).standard_normal((5, 4)).astype(np.float32)
    c_ref, mu_ref, logvar_ref = (t.numpy() for t in g.get_layer("ca")([vectors * scale, eps]))
    np.testing.assert_array_equal(views["text"], vectors)
    np.testing.assert_allclose(views["mu"], mu_ref, atol=TOL)
    np.testing.assert_allclose(views["logvar"], logvar_ref, atol=TOL)
    np.testing.assert_allclose(views["c"], c_ref, atol=TOL)
    np.testing.assert_allclose(views["c"], mu_ref + np.exp(0.5 * logvar_ref) * eps, atol=TOL)


def test_study_end_to_end_on_a_tiny_run(tmp_path):
    from test_gan_fixtures import tiny_synthetic_run
    from tools.evaluation.probe import probe_attributes, read_attributes

    data, cache, run = tiny_synthetic_run(tmp_path, 40)
    assert ca_probe.main(["--runs", f"tiny={run}", "--data", str(data), "--images", "40",
                          "--results", str(tmp_path)]) == 0
    rows = [line.strip("|").split("|") for line in next(tmp_path.glob("ca-probe-*.md")).read_text().splitlines()
            if line.startswith("| tiny ")]
    assert [r[2].strip() for r in rows] == ["text", "mu", "c"] and all(r[1].strip() == "2" for r in rows)
    encoder = probe_attributes(cache, read_attributes(data), seed=0, max_images=40)
    text_row = [float(v) for v in rows[0][3:7]]
    assert text_row == pytest.approx([round(encoder[a]["accuracy"], 3) for a in ca_probe.ATTRIBUTES], abs=1e-9)
    sigma, spread, kl = (float(v) for v in rows[2][8:11])
    assert 0.5 < sigma < 2.0 and spread > 0 and kl >= 0  # 2 steps from init: σ = exp(½ log σ²) near 1


def test_a_folder_that_is_no_run_is_a_one_line_error(tmp_path):
    from tools.errors import UserError

    with pytest.raises(UserError, match="no config.json there"):
        ca_probe.main(["--runs", f"a={tmp_path}"])

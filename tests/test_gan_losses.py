"""Golden values for the loss families and the KL term, hand-computed on small known logits.

Logits used throughout: real [2, -1], wrong [0.5, -0.5], fake [-2, 1] (batch of 2).
softplus(x) = ln(1 + e^x): softplus(-2) = 0.1269280110, softplus(1) = 1.3132616875,
softplus(0.5) = 0.9740769842, softplus(-0.5) = 0.4740769842, softplus(2) = 2.1269280110,
softplus(-1) = 0.3132616875.
"""
import numpy as np
import pytest
import tensorflow as tf

from gan import losses as L

REAL = tf.constant([2.0, -1.0])
WRONG = tf.constant([0.5, -0.5])
FAKE = tf.constant([-2.0, 1.0])
TOL = 1e-6


def close(x, expected):
    assert float(x) == pytest.approx(expected, abs=TOL)


def test_bce_discriminator_loss_golden():
    real = (0.1269280110 + 1.3132616875) / 2  # BCE(real, 1) = mean softplus(-real)     = 0.7200948493
    wrong = (0.9740769842 + 0.4740769842) / 2  # BCE(wrong, 0) = mean softplus(wrong)    = 0.7240769842
    fake = (0.1269280110 + 1.3132616875) / 2  # BCE(fake, 0) = mean softplus(fake)       = 0.7200948493
    close(L.bce_discriminator_loss(REAL, WRONG, FAKE), real + 0.5 * (wrong + fake))  # 1.4421807660
    close(L.bce_discriminator_loss(REAL, WRONG, FAKE), 1.4421807660)
    close(L.bce_discriminator_loss(REAL, None, FAKE), 1.4401896986)  # plain conditional GAN: real + fake


def test_bce_generator_loss_golden():
    close(L.bce_generator_loss(FAKE), (2.1269280110 + 0.3132616875) / 2)  # 1.2200948493


def test_hinge_losses_golden():
    # real: relu(1-2)=0, relu(1+1)=2 -> 1; wrong: relu(1.5)=1.5, relu(0.5)=0.5 -> 1; fake: relu(-1)=0, relu(2)=2 -> 1
    close(L.hinge_discriminator_loss(REAL, WRONG, FAKE), 1.0 + 0.5 * (1.0 + 1.0))
    close(L.hinge_discriminator_loss(REAL, None, FAKE), 2.0)
    close(L.hinge_generator_loss(FAKE), 0.5)  # -mean(-2, 1)


def test_magp_golden():
    # per-sample norm of the image and text gradients taken together: sqrt(3² + 0² + 4²) = 5, sqrt(0 + 0 + 1) = 1
    g_img = tf.constant([[[3.0], [0.0]], [[0.0], [0.0]]])  # [2, 2, 1]
    g_txt = tf.constant([[4.0], [1.0]])  # [2, 1]
    np.testing.assert_allclose(L.gradient_norms([g_img, g_txt]).numpy(), [5.0, 1.0], atol=TOL)
    norms = tf.constant([0.5, 1.0])
    close(L.magp_penalty(norms), 2.0 * (0.5**6 + 1.0**6) / 2)  # k=2, p=6: 1.015625
    close(L.magp_discriminator_loss(REAL, WRONG, FAKE, norms), 2.0 + 1.015625)
    close(L.magp_discriminator_loss(REAL, WRONG, FAKE, norms, weight=1.0, power=2.0), 2.0 + (0.25 + 1.0) / 2)
    close(L.magp_generator_loss(FAKE), 0.5)


def test_binding_rank_loss_golden():
    true = tf.constant([2.0, 0.0, 1.0, 5.0])
    exchanged = tf.constant([2.0, 1.0, -1.0, -5.0])
    mask = tf.constant([1.0, 1.0, 1.0, 0.0])  # the last row's mismatched caption is no exchanged one: it adds 0
    # softplus(0) = ln 2, softplus(1) = 1.3132616875, softplus(-2) = 0.1269280110; mean over the 4 rows
    close(L.binding_rank_loss(true, exchanged, mask), (np.log(2.0) + 1.3132616875 + 0.1269280110) / 4)
    close(L.binding_rank_loss(true, exchanged, tf.zeros(4)), 0.0)


def test_kl_divergence_golden():
    # elements: ½(0.25 + 1 - 1 - 0) = 0.125 and ½(1 + 2 - 1 - ln 2) = 0.6534264097; mean over all = 0.3892132049
    mu = tf.constant([[0.5, -1.0]])
    logvar = tf.constant([[0.0, float(np.log(2.0))]])
    close(L.kl_divergence(mu, logvar), 0.3892132049)
    close(L.kl_divergence(tf.zeros([3, 4]), tf.zeros([3, 4])), 0.0)  # N(0, 1) itself


def test_losses_take_mixed_precision_logits():
    close(L.bce_discriminator_loss(tf.cast(REAL, tf.float16), tf.cast(WRONG, tf.float16), tf.cast(FAKE, tf.float16)),
          1.4421807660)
    assert L.bce_generator_loss(tf.cast(FAKE, tf.float16)).dtype == tf.float32


def test_conditioning_augmentation_reparameterises():
    from gan.conditioning import ConditioningAugmentation

    ca = ConditioningAugmentation(c_dim=3)
    text = tf.constant([[0.3, -0.2], [1.0, 0.5]])
    eps = tf.constant([[1.0, -1.0, 0.5], [0.0, 2.0, -2.0]])
    c0, mu, logvar = ca([text, tf.zeros([2, 3])])
    np.testing.assert_array_equal(c0.numpy(), mu.numpy())  # ε = 0 gives the mean
    c, mu2, logvar2 = ca([text, eps])
    np.testing.assert_allclose(c.numpy(), mu.numpy() + np.exp(0.5 * logvar.numpy()) * eps.numpy(), atol=TOL)
    # μ, log σ² are the two halves of one Dense(2·c_dim) + leaky ReLU(0.2) on the text vector
    h = text.numpy() @ ca.dense.kernel.numpy() + ca.dense.bias.numpy()
    h = np.where(h > 0, h, 0.2 * h)
    np.testing.assert_allclose(mu.numpy(), h[:, :3], atol=TOL)
    np.testing.assert_allclose(logvar.numpy(), h[:, 3:], atol=TOL)


def test_sampling_eps_is_a_fixed_unit_column_projection_of_z():
    """ca_noise's ε: scale · z P with P drawn once from numpy's PCG64 (the same on every machine)."""
    from gan.conditioning import _z_to_eps, sampling_eps

    p = _z_to_eps(8, 4)
    assert p.shape == (8, 4) and p.dtype == np.float32
    np.testing.assert_allclose(p[0], [0.22556748, 0.09512426, 0.43573998, -0.0894191], atol=TOL)
    np.testing.assert_allclose(p[:, 0], [0.22556748, -0.45918929, 0.38471615, -0.07144631, -0.66715645,
                                         0.12246417, 0.35257484, 0.02737168], atol=TOL)
    np.testing.assert_allclose(np.linalg.norm(p, axis=0), 1.0, atol=TOL)
    z = np.random.default_rng(0).standard_normal((20000, 8)).astype(np.float32)
    eps = np.asarray(sampling_eps(tf.constant(z), 4, 1.0))
    np.testing.assert_allclose(eps, z @ p, atol=1e-5)
    np.testing.assert_allclose(eps.std(axis=0), 1.0, atol=0.03)  # each ε_j ~ N(0, 1) for z ~ N(0, I)
    np.testing.assert_allclose(np.asarray(sampling_eps(tf.constant(z[:5]), 4, 0.5)), 0.5 * eps[:5], atol=1e-6)
    zero = np.asarray(sampling_eps(tf.constant(z[:5]), 4, 0.0))
    assert zero.shape == (5, 4) and not zero.any()  # scale 0: CA's mean, exactly


@pytest.mark.parametrize("arch", ["stackgan", "dfgan"])
def test_generators_see_the_ca_sample_and_train_its_mean_head(arch):
    """Inside the functional generators, c, μ and log σ² are CA's three distinct outputs: c = μ + σ·ε reaches the
    image (so ε matters), μ ≠ log σ², and a loss on μ reaches μ's half of CA's kernel. Regression test for a
    compute_output_spec that returned one spec three times and wired all three to log σ²."""
    import keras

    from gan import dfgan, stackgan

    build = {"stackgan": stackgan.build_generator, "dfgan": dfgan.build_generator}[arch]
    keras.utils.set_random_seed(0)
    g = build(text_dim=16, z_dim=8, c_dim=4, ngf=8)
    ca = g.get_layer("ca")
    probe = keras.Model(g.inputs, [g.get_layer("c_z").output, *g.outputs])
    rng = np.random.default_rng(0)
    text, z, eps = (tf.constant(rng.standard_normal(s), tf.float32) for s in ((3, 16), (3, 8), (3, 4)))
    cz, image, mu, logvar = probe([text, z, eps])
    ca_text = g.get_layer("g_text_scale")(text) if arch == "dfgan" else text
    c_ref, mu_ref, logvar_ref = ca([ca_text, eps])
    np.testing.assert_allclose(cz.numpy()[:, :4], c_ref.numpy(), atol=TOL)  # c, then z
    np.testing.assert_allclose(mu.numpy(), mu_ref.numpy(), atol=TOL)
    np.testing.assert_allclose(logvar.numpy(), logvar_ref.numpy(), atol=TOL)
    assert np.abs(mu.numpy() - logvar.numpy()).max() > 0.01
    cz0, image0 = probe([text, z, tf.zeros_like(eps)])[:2]
    np.testing.assert_allclose(cz0.numpy()[:, :4], mu_ref.numpy(), atol=TOL)  # ε = 0: G sees μ
    assert np.abs(cz.numpy()[:, :4] - mu_ref.numpy()).max() > 0.1
    moved = np.abs(image.numpy() - image0.numpy()).max()
    assert moved > 0.01 * np.abs(image0.numpy()).max()  # ε reaches the image (stackgan's is ~1e-6 at init)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(tf.square(g([text, z, eps])[1]))
    grad = tape.gradient(loss, ca.dense.kernel).numpy()
    assert np.abs(grad[:, :4]).max() > 0 and np.abs(grad[:, 4:]).max() == 0  # μ's columns only


def test_loss_families_table():
    assert set(L.LOSS_FAMILIES) == {"bce", "hinge", "magp"}
    for name, (g, d) in L.LOSS_FAMILIES.items():
        assert g.__name__ == f"{name}_generator_loss" and d.__name__ == f"{name}_discriminator_loss"

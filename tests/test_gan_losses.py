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


def test_kl_divergence_golden():
    # elements: ½(0.25 + 1 - 1 - 0) = 0.125 and ½(1 + 2 - 1 - ln 2) = 0.6534264097; mean over all = 0.3892132049
    mu = tf.constant([[0.5, -1.0]])
    logvar = tf.constant([[0.0, float(np.log(2.0))]])
    close(L.kl_divergence(mu, logvar), 0.3892132049)
    close(L.kl_divergence(tf.zeros([3, 4]), tf.zeros([3, 4])), 0.0)  # N(0, 1) itself


def test_mode_seeking_golden():
    # images differ by 0.5 on every element, noise by |1 - (-1)| = 2 and |0 - 0| = 0: ratio 0.5 / 1 -> 1 / 0.5
    a, b = tf.zeros([2, 2, 2, 3]), tf.fill([2, 2, 2, 3], 0.5)
    n1, n2 = tf.constant([[1.0, 0.0], [1.0, 0.0]]), tf.constant([[-1.0, 0.0], [-1.0, 0.0]])
    assert float(L.mode_seeking_loss(a, b, n1, n2, eps=0.0)) == pytest.approx(2.0, rel=1e-6)
    close(L.mode_seeking_loss(a, b, n1, n2), 1 / (0.5 + 1e-5))  # default eps
    # identical images for different noise (a collapsed G): the term is 1 / eps, its largest
    assert float(L.mode_seeking_loss(a, a, n1, n2)) == pytest.approx(1e5, rel=1e-6)
    # twice the image distance for the same noise distance halves it
    close(L.mode_seeking_loss(a, 2 * b, n1, n2, eps=0.0), 1.0)


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


def test_loss_families_table():
    assert set(L.LOSS_FAMILIES) == {"bce", "hinge", "magp"}
    for name, (g, d) in L.LOSS_FAMILIES.items():
        assert g.__name__ == f"{name}_generator_loss" and d.__name__ == f"{name}_discriminator_loss"

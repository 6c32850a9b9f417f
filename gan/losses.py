"""GAN losses as pure functions of discriminator logits (TF-GAN naming: `<family>_generator_loss` /
`<family>_discriminator_loss`).

Every discriminator loss is matching-aware (Reed et al. 2016, "Generative Adversarial Text to Image
Synthesis", GAN-CLS): D sees three kinds of pairs —
    real  = (real image, its caption)           -> "real"
    wrong = (real image, another image's caption) -> "fake"
    fake  = (generated image, its caption)      -> "fake"
and weighs them `real + ½(wrong + fake)`. Pass `wrong_logits=None` for a plain conditional GAN
(`real + fake`). All inputs are float32 logits of shape [B] (or [B, 1]); results are float32 scalars,
means over the batch.

`LOSS_FAMILIES` maps a `--loss` name to its (generator_loss, discriminator_loss) pair.
"""
from __future__ import annotations

import tensorflow as tf


def _mean(x):
    return tf.reduce_mean(tf.cast(x, tf.float32))


def _matching_aware(real_term, wrong_term, fake_term):
    if wrong_term is None:
        return real_term + fake_term
    return real_term + 0.5 * (wrong_term + fake_term)


# ---------------------------------------------------------------------------------------------- bce
def bce_discriminator_loss(real_logits, wrong_logits, fake_logits):
    """Binary cross-entropy on logits, matching-aware (GAN-CLS; StackGAN, Zhang et al. 2017):

        L_D = E[softplus(-D(x, t))] + ½ (E[softplus(D(x, t̂))] + E[softplus(D(G(z, t), t))])

    i.e. BCE(real, 1) + ½ (BCE(wrong, 0) + BCE(fake, 0)), since BCE(l, 1) = softplus(-l) and
    BCE(l, 0) = softplus(l).
    """
    real = _mean(tf.nn.softplus(-tf.cast(real_logits, tf.float32)))
    fake = _mean(tf.nn.softplus(tf.cast(fake_logits, tf.float32)))
    wrong = None if wrong_logits is None else _mean(tf.nn.softplus(tf.cast(wrong_logits, tf.float32)))
    return _matching_aware(real, wrong, fake)


def bce_generator_loss(fake_logits):
    """Non-saturating generator loss (Goodfellow et al. 2014, §3): L_G = E[softplus(-D(G(z, t), t))]
    = BCE(fake, 1)."""
    return _mean(tf.nn.softplus(-tf.cast(fake_logits, tf.float32)))


# -------------------------------------------------------------------------------------------- hinge
def hinge_discriminator_loss(real_logits, wrong_logits, fake_logits):
    """Hinge loss (Lim & Ye 2017, "Geometric GAN"; Miyato et al. 2018), matching-aware as in DF-GAN
    (Tao et al. 2022):

        L_D = E[relu(1 - D(x, t))] + ½ (E[relu(1 + D(x, t̂))] + E[relu(1 + D(G(z, t), t))])
    """
    real = _mean(tf.nn.relu(1.0 - tf.cast(real_logits, tf.float32)))
    fake = _mean(tf.nn.relu(1.0 + tf.cast(fake_logits, tf.float32)))
    wrong = None if wrong_logits is None else _mean(tf.nn.relu(1.0 + tf.cast(wrong_logits, tf.float32)))
    return _matching_aware(real, wrong, fake)


def hinge_generator_loss(fake_logits):
    """Hinge generator loss (Lim & Ye 2017): L_G = -E[D(G(z, t), t)]."""
    return -_mean(fake_logits)


# --------------------------------------------------------------------------------------------- magp
def gradient_norms(grads):
    """Per-sample L2 norm of several gradients taken together: list of [B, ...] -> [B] float32.

    For MA-GP pass [∂D/∂x, ∂D/∂t] of the real pair (image and sentence vector), as DF-GAN concatenates them.
    """
    squares = [tf.reduce_sum(tf.reshape(tf.square(tf.cast(g, tf.float32)), [tf.shape(g)[0], -1]), axis=1)
               for g in grads]
    return tf.sqrt(tf.add_n(squares))


def magp_penalty(real_grad_norms, weight=2.0, power=6.0):
    """Matching-aware gradient penalty (DF-GAN, Tao et al. 2022, eq. 3): k · E[‖(∇_x D, ∇_t D)‖^p] on real,
    matching pairs; DF-GAN uses k = 2, p = 6."""
    return weight * _mean(tf.pow(tf.cast(real_grad_norms, tf.float32), power))


def magp_discriminator_loss(real_logits, wrong_logits, fake_logits, real_grad_norms, weight=2.0, power=6.0):
    """DF-GAN discriminator loss (Tao et al. 2022, "DF-GAN: A Simple and Effective Baseline for
    Text-to-Image Synthesis"): matching-aware hinge loss plus MA-GP,

        L_D = hinge_discriminator_loss(real, wrong, fake) + k · E[‖(∇_x D(x, t), ∇_t D(x, t))‖₂^p]

    `real_grad_norms` [B] comes from `gradient_norms([dD/dx, dD/dt])` on the real pairs.
    """
    return hinge_discriminator_loss(real_logits, wrong_logits, fake_logits) + magp_penalty(
        real_grad_norms, weight, power
    )


def magp_generator_loss(fake_logits):
    """DF-GAN generator loss (Tao et al. 2022): L_G = -E[D(G(z, t), t)] (the hinge generator loss)."""
    return hinge_generator_loss(fake_logits)


# ----------------------------------------------------------------------------------------------- KL
def binding_rank_loss(true_logits, exchanged_logits, mask):
    """The binding term: an image should match its own caption better than the caption's exchanged-colour twin,

        L = mean_i m_i · softplus(D(x_i, t̃_i) − D(x_i, t_i))

    (a logistic ranking loss). G's term (exchanged_g) takes its fakes x_i = G(z, t_i): the NegCLIP idea turned on the
    generator; D's (exchanged_d) the real images, which keeps widening D's gap between a caption and its twin after the
    matching-aware loss is content with both. mask [B]: 1 where t̃_i is an exchanged caption of the image t_i
    describes, 0 elsewhere (those rows add 0); a batch mean, so replicas sum exactly.
    """
    gap = tf.cast(exchanged_logits, tf.float32) - tf.cast(true_logits, tf.float32)
    return _mean(tf.cast(mask, tf.float32) * tf.nn.softplus(gap))


def kl_divergence(mu, logvar):
    """KL(N(μ, σ²) ‖ N(0, I)) of conditioning augmentation (StackGAN, Zhang et al. 2017, eq. 3), averaged
    over batch AND dimensions as in the StackGAN reference code:

        KL = mean_{b,j} ½ (μ² + σ² − 1 − log σ²),  σ² = exp(logvar)
    """
    mu = tf.cast(mu, tf.float32)
    logvar = tf.cast(logvar, tf.float32)
    return tf.reduce_mean(0.5 * (tf.square(mu) + tf.exp(logvar) - 1.0 - logvar))


LOSS_FAMILIES = {
    "bce": (bce_generator_loss, bce_discriminator_loss),
    "hinge": (hinge_generator_loss, hinge_discriminator_loss),
    "magp": (magp_generator_loss, magp_discriminator_loss),
}


# ------------------------------------------------------------------------------- auxiliary classifier
def auxiliary_classifier_loss(class_logits, labels):
    """Cross-entropy of D's auxiliary class head (AC-GAN, Odena et al. 2017; TAC-GAN, Dash et al. 2017):

        L_cls = E[-log softmax(l(x))_y]

    `class_logits` [B, K] (any float dtype), `labels` [B] int class ids. The same function gives D's term on real
    images (D learns to classify them) and G's term on its fakes labelled with their captions' class (G is rewarded
    when D finds that class in them)."""
    logits = tf.cast(class_logits, tf.float32)
    return _mean(tf.nn.sparse_softmax_cross_entropy_with_logits(tf.cast(labels, tf.int32), logits))


def classifier_accuracy(class_logits, labels):
    """Share of rows whose arg-max class is the label: [B, K], [B] -> float32 scalar."""
    hits = tf.equal(tf.argmax(class_logits, axis=-1, output_type=tf.int32), tf.cast(labels, tf.int32))
    return _mean(tf.cast(hits, tf.float32))

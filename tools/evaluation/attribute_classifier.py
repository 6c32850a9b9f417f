"""The attribute classifier: a small CNN reading petal colour, centre colour, petal count and petal shape.

Trained once on real synthetic flowers rendered with its own seed (never the GAN's training images), saved to
`cache/attribute_classifier/` with its held-out accuracy per attribute, and reused on later calls:

    clf = load_or_train()                      # trains (~1-2 min on 2 cores) only the first time
    acc = attribute_accuracy(images, named, clf)
    feats = clf.features(images)               # [N, 128] penultimate layer: the FID feature space
    probs = clf.joint_probs(images)            # [N, 224] product of the four heads: the IS class space

Its held-out accuracy is the ceiling of "does the image follow the text": a generator cannot be measured more
accurately than the classifier reads real images.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from tools.errors import UserError
from tools.evaluation.first_use import first_use_lock
from tools.evaluation.real_data import (ATTRIBUTE_VALUES, ATTRIBUTES, generate_labelled_images, load_labelled_images,
                                        named_accuracy)

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "cache" / "attribute_classifier"
VERSION = 1  # bump when the architecture or training recipe changes: stale caches are retrained
DATA_SEED = 90210  # the classifier's own real images; the demo dataset uses seed 0
N_TRAIN, N_HELDOUT = 6000, 1000
EPOCHS = 8
BATCH = 64
FEATURE_DIM = 128
CEILING = 0.95  # required held-out accuracy on every attribute
WEIGHTS, META, HELDOUT = "classifier.weights.h5", "classifier.json", "heldout.npz"


def build_model():
    """Keras model: uint8-valued image [B, 64, 64, 3] -> {attribute: softmax [B, C]}; layer "features" [B, 128]."""
    import keras
    from keras import layers

    from tools.evaluation.networks import image_trunk

    inp = keras.Input((64, 64, 3), name="image")
    x = image_trunk(inp)  # [B, 1024]
    x = layers.Dropout(0.3)(x)
    feats = layers.Dense(FEATURE_DIM, activation="relu", name="features")(x)
    heads = {a: layers.Dense(len(v), activation="softmax", name=a)(feats) for a, v in ATTRIBUTE_VALUES.items()}
    return keras.Model(inp, heads, name="attribute_classifier")


class AttributeClassifier:
    """A trained classifier plus its record (`meta`: held-out accuracy, data seed, training time, ...)."""

    def __init__(self, model, meta: dict):
        import keras

        self.model = model  # the trained model, {attribute: softmax}
        self.meta = meta
        # one pass gives the features and every head: [features [B, 128], *[B, C] in ATTRIBUTES order]
        outs = [model.get_layer("features").output] + [model.get_layer(a).output for a in ATTRIBUTES]
        self._inference = keras.Model(model.input, outs)

    def _run(self, images: np.ndarray) -> list[np.ndarray]:
        images = check_images(images)
        outs = [[] for _ in range(1 + len(ATTRIBUTES))]
        for i in range(0, len(images), 256):
            for o, part in zip(outs, self._inference(images[i : i + 256].astype(np.float32), training=False)):
                o.append(np.asarray(part))
        return [np.concatenate(o) if o else np.zeros((0, 1), np.float32) for o in outs]

    def features(self, images: np.ndarray) -> np.ndarray:
        """uint8 [N, 64, 64, 3] -> float32 [N, 128] penultimate activations (the FID feature space)."""
        return self._run(images)[0]

    def probs(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """attribute -> [N, C] class probabilities, classes in ATTRIBUTE_VALUES order."""
        return dict(zip(ATTRIBUTES, self._run(images)[1:]))

    def predict(self, images: np.ndarray) -> np.ndarray:
        """int64 [N, 4] predicted class index per attribute (columns in ATTRIBUTES order)."""
        return np.stack([p.argmax(axis=1) for p in self.probs(images).values()], axis=1)

    def joint_probs(self, images: np.ndarray) -> np.ndarray:
        """[N, 7·4·4·2 = 224] product of the four heads (independent by construction of the data)."""
        joint = None
        for p in self.probs(images).values():
            joint = p if joint is None else (joint[:, :, None] * p[:, None, :]).reshape(len(p), -1)
        return joint

    def accuracy(self, images: np.ndarray, labels: np.ndarray) -> dict[str, float]:
        """Per-attribute accuracy against int64 [N, 4] labels."""
        pred = self.predict(images)
        return {a: float(np.mean(pred[:, j] == labels[:, j])) for j, a in enumerate(ATTRIBUTES)}


def check_images(images: np.ndarray) -> np.ndarray:
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1:] != (64, 64, 3) or images.dtype != np.uint8:
        raise ValueError(f"want uint8 images [N, 64, 64, 3], got {images.dtype} {images.shape}")
    return images


def train(
    images: np.ndarray, labels: np.ndarray, heldout_images: np.ndarray, heldout_labels: np.ndarray,
    epochs: int = EPOCHS, seed: int = 0, log=print,
) -> AttributeClassifier:
    """Fit the classifier; returns it with meta["heldout_accuracy"] measured on the held-out images."""
    import keras

    keras.utils.set_random_seed(seed)
    model = build_model()
    steps = epochs * int(np.ceil(len(images) / BATCH))
    lr = keras.optimizers.schedules.CosineDecay(2e-3, steps, alpha=0.05)
    model.compile(
        optimizer=keras.optimizers.Adam(lr),
        loss={a: "sparse_categorical_crossentropy" for a in ATTRIBUTES},
    )
    start = time.perf_counter()
    model.fit(
        images.astype(np.float32), {a: labels[:, j] for j, a in enumerate(ATTRIBUTES)},
        batch_size=BATCH, epochs=epochs, verbose=0, shuffle=True,
        callbacks=[_epoch_log(epochs, len(images), log)],
    )
    clf = AttributeClassifier(model, {})
    acc = clf.accuracy(heldout_images, heldout_labels)
    clf.meta = {
        "version": VERSION, "epochs": epochs, "n_train": len(images), "n_heldout": len(heldout_images),
        "heldout_accuracy": acc, "meets_ceiling": all(v >= CEILING for v in acc.values()), "ceiling": CEILING,
        "train_seconds": round(time.perf_counter() - start, 1), "feature_dim": FEATURE_DIM,
        "classes": {a: list(v) for a, v in ATTRIBUTE_VALUES.items()},
    }
    return clf


def _epoch_log(epochs: int, n: int, log):
    """Keras callback printing `epoch 3/8 | loss 0.412 | 410 img/s | eta 40 s` once per epoch."""
    import keras

    class EpochLog(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.t0 = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            dt = time.perf_counter() - self.t0
            eta = dt / (epoch + 1) * (epochs - epoch - 1)
            log(f"epoch {epoch + 1}/{epochs} | loss {logs['loss']:.3f} | {n * (epoch + 1) / dt:.0f} img/s | eta {eta:.0f} s")

    return EpochLog()


def save(clf: AttributeClassifier, directory: Path, heldout: tuple[np.ndarray, np.ndarray]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    clf.model.save_weights(str(directory / WEIGHTS))
    np.savez_compressed(directory / HELDOUT, images=heldout[0], labels=heldout[1])
    (directory / META).write_text(json.dumps(clf.meta, indent=2) + "\n")  # last: its presence marks a complete save


def load(directory: Path) -> AttributeClassifier | None:
    """The saved classifier, or None when absent, from another VERSION, or not matching this architecture."""
    meta_path = directory / META
    if not meta_path.is_file():
        return None
    meta = json.loads(meta_path.read_text())
    if meta.get("version") != VERSION or not (directory / WEIGHTS).is_file():
        return None
    model = build_model()
    try:
        model.load_weights(str(directory / WEIGHTS))
    except ValueError:  # the architecture changed without a VERSION bump: retrain rather than fail
        return None
    return AttributeClassifier(model, meta)


def load_or_train(directory: str | Path | None = None, dataset_dir: str | Path | None = None, log=print) -> AttributeClassifier:
    """The cached classifier in `directory` (default cache/attribute_classifier/), trained there if missing.

    Training data: N_TRAIN + N_HELDOUT flowers rendered with DATA_SEED, or, with `dataset_dir`, a seeded
    subset of up to that many images of that synthetic folder (the last N_HELDOUT held out). A classifier
    already in `directory` is reused whatever its data. Warns when an attribute misses the CEILING.
    """
    directory = Path(directory) if directory else DEFAULT_DIR
    clf = load(directory)
    if clf is not None:
        return clf
    with first_use_lock(directory):
        return load(directory) or _train_and_save(directory, dataset_dir, log)


def _train_and_save(directory: Path, dataset_dir, log) -> AttributeClassifier:
    t0 = time.perf_counter()
    if dataset_dir is None:
        log(f"attribute classifier: rendering {N_TRAIN + N_HELDOUT} real flowers (seed {DATA_SEED}) ...")
        images, labels = generate_labelled_images(N_TRAIN + N_HELDOUT, DATA_SEED)
        source = {"data": "tools.synthetic.render (in memory)", "data_seed": DATA_SEED}
    else:
        images, labels = load_labelled_images(dataset_dir, limit=N_TRAIN + N_HELDOUT, seed=DATA_SEED)
        source = {"data": str(Path(dataset_dir).resolve()), "data_seed": DATA_SEED}
        if len(images) < 2 * N_HELDOUT:
            raise UserError(f"{dataset_dir}: {len(images)} images; the classifier needs >= {2 * N_HELDOUT}")
    n_train = len(images) - N_HELDOUT
    log(f"attribute classifier: training on {n_train} images -> {directory}")
    clf = train(images[:n_train], labels[:n_train], images[n_train:], labels[n_train:], log=log)
    clf.meta.update(source, data_seconds=round(time.perf_counter() - t0 - clf.meta["train_seconds"], 1))
    save(clf, directory, (images[n_train:], labels[n_train:]))
    acc = " ".join(f"{a} {v:.3f}" for a, v in clf.meta["heldout_accuracy"].items())
    log(f"attribute classifier: held-out accuracy {acc} ({clf.meta['train_seconds']:.0f} s)")
    if not clf.meta["meets_ceiling"]:
        log(f"warning: an attribute is below the {CEILING:.0%} ceiling; attribute accuracies are less trustworthy")
    return clf


def heldout_images(directory: str | Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The classifier's own held-out real images and labels (uint8 [1000, 64, 64, 3], int64 [1000, 4])."""
    data = np.load(Path(directory or DEFAULT_DIR) / HELDOUT)
    return data["images"], data["labels"]


def attribute_accuracy(images: np.ndarray, named_attributes: list[dict], classifier: AttributeClassifier | None = None) -> dict:
    """Per attribute: how often the image shows the value its caption names.

    images: uint8 [N, 64, 64, 3]; named_attributes[i]: the attributes caption i names, e.g.
    {"petal_color": "red", "petal_count": 5} (other keys ignored). Each attribute is scored only over the
    captions that name it: {attribute: {"accuracy": float | None (no caption names it), "count": int}}.
    """
    if len(images) != len(named_attributes):
        raise ValueError(f"{len(images)} images but {len(named_attributes)} attribute rows")
    clf = classifier or load_or_train()
    pred = clf.predict(images) if len(images) else np.zeros((0, len(ATTRIBUTES)), np.int64)
    return named_accuracy({a: pred[:, j] for j, a in enumerate(ATTRIBUTES)}, named_attributes)

"""Training on several devices or hosts with tf.distribute: strategy choice, replica-aware GanTrainer, distributed
batches, the `strategy.run` step, chief-only writes.

    python train_gan.py --embeddings cache/flowers-minilm.h5 --strategy mirrored          # all GPUs of this host
    TF_CONFIG='{"cluster": {"worker": ["host1:12345", "host2:12345"]}, "task": {"type": "worker", "index": 0}}' \\
        python train_gan.py --embeddings cache/flowers-minilm.h5 --strategy multiworker  # one command per host

The contract: a step on R replicas at global batch B is the step a single device takes at batch B.
  - batches: the single-device pipeline makes the global batch of step s (a pure function of s); replica r
    trains on rows [r·B/R, (r+1)·B/R) of it (`distribute`), so hard negatives and caption choices are unchanged;
  - noise: `ReplicaSlicedGenerator` replaces the trainer's tf.random.Generator. Every replica advances one shared
    stream, draws the GLOBAL [R·b, ...] tensor and keeps its own rows, so replicas get different z, CA noise and
    augmentations, and together exactly the numbers one device draws at batch B (and a checkpoint resumes on any
    replica count);
  - losses: each replica's losses are means over its b = B/R rows and Keras 3 optimizers SUM gradients across
    replicas, so every optimizer's `scale_loss` also divides by R: Σ_r ∇(L_r / R) = ∇ of the global-batch mean.
    This holds for any train_step that passes each loss through `optimizer.scale_loss` (as mixed precision
    already requires) and whose losses are batch means; `step_function` refuses a train_step that skips it;
  - batch norm: every BatchNormalization layer of every model is switched to synchronized statistics over the
    global batch (archs without batch norm are unaffected);
  - checkpoints, samples, config.json, the log and TensorBoard are written by the chief only; other workers write
    into a private temporary folder that is removed at exit, and restore from the chief's run folder on --resume.
Keras `fit` is not used (it fails under MultiWorkerMirroredStrategy: keras-team/keras#20585).
"""
from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import keras
import tensorflow as tf

from tools.errors import UserError

STRATEGIES = ("auto", "none", "mirrored", "multiworker")
TF_CONFIG_EXAMPLE = ('TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                     '"task": {"type": "worker", "index": 0}}\'')


@dataclass
class Distribution:
    """The strategy in effect for this process."""

    name: str  # none | mirrored | multiworker
    strategy: tf.distribute.Strategy | None  # None: plain single-device training
    replicas: int  # replicas in sync, over all workers
    workers: int  # processes (hosts) taking part
    worker_index: int  # this process's index among them (chief: 0)
    is_chief: bool  # writes the run folder

    def scope(self):
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    def facts(self) -> dict:
        """What config.json's "run" section records."""
        return dict(strategy=self.name, replicas=self.replicas, workers=self.workers)

    def describe(self, batch_size: int) -> str:
        if self.strategy is None:
            return "strategy: none (one device)"
        return (f"strategy: {self.name} | {self.replicas} replicas on {self.workers} worker(s) | global batch "
                f"{batch_size} = {self.replicas} × {batch_size // self.replicas} | this is worker "
                f"{self.worker_index}" + (" (chief)" if self.is_chief else " (writes a private folder, removed at exit; "
                                                                     "the chief's run folder is the run)"))

    def private_dir(self) -> Path:
        """A non-chief worker's run folder: a temporary folder removed when the process exits."""
        path = Path(tempfile.mkdtemp(prefix=f"gan-worker{self.worker_index}-"))
        atexit.register(shutil.rmtree, path, ignore_errors=True)
        return path


_CACHE: dict[str, Distribution] = {}  # one strategy per process (MultiWorkerMirroredStrategy can be made once)


def distribution(cfg) -> Distribution:
    """The Distribution for cfg.strategy (made once per process), checked against cfg's batch and schedule."""
    name = resolve_name(cfg.strategy)
    if name not in _CACHE:
        _CACHE[name] = _make(name)
    dist = _CACHE[name]
    if cfg.batch_size % dist.replicas:
        raise UserError(f"--batch-size {cfg.batch_size} does not split over {dist.replicas} replicas "
                        f"(--strategy {name}): use a multiple of {dist.replicas}")
    if dist.workers > 1 and cfg.minutes:
        raise UserError(f"--minutes {cfg.minutes:g} with --strategy multiworker: workers would stop at different "
                        f"steps and wait for each other forever; give --steps or --epochs instead")
    return dist


def resolve_name(name: str) -> str:
    """auto -> multiworker when TF_CONFIG names a cluster of several tasks, mirrored when several GPUs are
    visible, else none."""
    if name not in STRATEGIES:
        raise UserError(f"--strategy {name!r}: choose one of {', '.join(STRATEGIES)}")
    if name != "auto":
        return name
    if os.environ.get("TF_CONFIG") and _cluster_size(_tf_config()) > 1:
        return "multiworker"
    return "mirrored" if len(tf.config.list_physical_devices("GPU")) > 1 else "none"


def _tf_config() -> dict:
    raw = os.environ.get("TF_CONFIG", "")
    if not raw:
        raise UserError(f"--strategy multiworker needs TF_CONFIG describing the cluster and this task, e.g. "
                        f"{TF_CONFIG_EXAMPLE} (index 1 on the second host)")
    try:
        conf = json.loads(raw)
        cluster, task = conf["cluster"], conf["task"]
        tasks = cluster[task["type"]]
        if not 0 <= int(task["index"]) < len(tasks):
            raise IndexError(task["index"])
    except (ValueError, KeyError, TypeError, IndexError) as e:
        raise UserError(f"TF_CONFIG is not a cluster spec with this task in it ({type(e).__name__}: {e}); "
                        f"expected e.g. {TF_CONFIG_EXAMPLE}") from None
    return conf


def _cluster_size(conf: dict) -> int:
    return sum(len(conf["cluster"].get(kind, [])) for kind in ("chief", "worker"))


def _make(name: str) -> Distribution:
    if name == "none":
        return Distribution("none", None, 1, 1, 0, True)
    if name == "mirrored":
        # all GPUs; without GPUs every logical CPU device (normally one; the tests split the CPU in two)
        devices = [d.name for d in tf.config.list_logical_devices("GPU")] or \
                  [d.name for d in tf.config.list_logical_devices("CPU")]
        strategy = tf.distribute.MirroredStrategy(devices)
        return Distribution("mirrored", strategy, strategy.num_replicas_in_sync, 1, 0, True)
    conf = _tf_config()
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    kind, index = conf["task"]["type"], int(conf["task"]["index"])
    has_chief = bool(conf["cluster"].get("chief"))
    chief = kind == "chief" or (kind == "worker" and index == 0 and not has_chief)
    position = index + (1 if kind == "worker" and has_chief else 0)
    return Distribution("multiworker", strategy, strategy.num_replicas_in_sync, _cluster_size(conf), position, chief)


# ------------------------------------------------------------------------------------------------ noise
class ReplicaSlicedGenerator(tf.random.Generator):
    """A tf.random.Generator whose batch-first draws are sliced from one global draw per replica.

    In a replica context with R replicas, `normal([b, ...])` draws [R·b, ...] from the stream every replica shares
    (the replica id is NOT hashed into the key, unlike a plain generator made in a strategy scope) and returns
    rows [r·b, (r+1)·b) for replica r; scalars are the same on every replica, as on one device. Outside a
    strategy (or with one replica) it draws exactly what a plain Generator in the same state draws. Distribution
    parameters (mean, minval, ...) must be scalars. make_seeds / split / binomial have no sliced form and are
    refused on several replicas.
    """

    def _preprocess_key(self, key):
        return key  # one stream for all replicas: each advances its copy of the state identically

    def _sliced(self, draw, shape, *args, **kwargs):
        ctx = tf.distribute.get_replica_context()
        n = 1 if ctx is None else ctx.num_replicas_in_sync
        shape = tf.unstack(shape) if isinstance(shape, tf.Tensor) else list(shape)
        if n == 1 or not shape:
            return draw(shape, *args, **kwargs)
        full = draw([n * shape[0], *shape[1:]], *args, **kwargs)  # [R·b, ...]: one device's draw at batch R·b
        return tf.reshape(full, [n, *shape])[ctx.replica_id_in_sync_group]  # [b, ...]: this replica's rows

    def normal(self, shape, *args, **kwargs):
        return self._sliced(super().normal, shape, *args, **kwargs)

    def uniform(self, shape, *args, **kwargs):
        return self._sliced(super().uniform, shape, *args, **kwargs)

    def truncated_normal(self, shape, *args, **kwargs):
        return self._sliced(super().truncated_normal, shape, *args, **kwargs)

    def uniform_full_int(self, shape, *args, **kwargs):
        return self._sliced(super().uniform_full_int, shape, *args, **kwargs)

    def _refuse_on_replicas(self, what: str):
        ctx = tf.distribute.get_replica_context()
        if ctx is not None and ctx.num_replicas_in_sync > 1:
            raise NotImplementedError(f"ReplicaSlicedGenerator.{what} on {ctx.num_replicas_in_sync} replicas: draw "
                                      f"batch-first noise with normal/uniform/truncated_normal/uniform_full_int")

    def make_seeds(self, count=1):
        self._refuse_on_replicas("make_seeds")
        return super().make_seeds(count)

    def split(self, count=1):
        self._refuse_on_replicas("split")
        return super().split(count)

    def binomial(self, *args, **kwargs):
        self._refuse_on_replicas("binomial")
        return super().binomial(*args, **kwargs)


# ---------------------------------------------------------------------------------------------- trainer
def build_trainer(dist: Distribution, cfg, vocab_size: int = 0):
    """gan.trainer.build_trainer inside the strategy scope (models, both optimizers, metrics, RNG), made
    replica-aware: sliced noise, synchronised batch norm, losses scaled by 1/R. Without a strategy: unchanged."""
    from gan.trainer import build_trainer as build

    keras.utils.set_random_seed(cfg.seed)  # initial weights depend on the seed alone, not on what ran before
    with dist.scope():
        trainer = build(cfg, vocab_size)
        if dist.strategy is not None:
            trainer.rng = ReplicaSlicedGenerator(state=trainer.rng.state, alg=trainer.rng.algorithm)
            sync_batch_norm(trainer)
            for opt in (trainer.d_optimizer, trainer.g_optimizer):
                scale_loss_by_replicas(opt, dist.replicas)
    return trainer


def sync_batch_norm(model: keras.Model) -> int:
    """Every BatchNormalization layer inside `model` (nested models too) uses global-batch statistics.
    Returns how many layers were switched. Keras reads the flag at call time, so this must precede tracing."""
    layers = [l for l in model._flatten_layers(include_self=False, recursive=True)
              if isinstance(l, keras.layers.BatchNormalization)]
    for layer in layers:
        layer.synchronized = True
    return len(layers)


def scale_loss_by_replicas(optimizer, replicas: int) -> None:
    """optimizer.scale_loss(loss) also divides by `replicas` (the optimizer sums gradients over replicas)."""
    base = optimizer.scale_loss

    def scale_loss(loss):
        scale_loss.calls += 1
        return base(loss) / replicas

    scale_loss.calls, scale_loss.replicas = 0, replicas
    optimizer.scale_loss = scale_loss


def step_function(trainer, dist: Distribution):
    """The compiled step: step(batch, *args) -> per-replica losses. Under a strategy, `strategy.run` of
    trainer.train_step on each replica's slice of a batch from `distribute`."""
    if dist.strategy is None:
        return tf.function(trainer.train_step)

    @tf.function
    def replicated(batch, *args):
        return dist.strategy.run(trainer.train_step, args=(batch, *args))

    def step(batch, *args):
        out = replicated(batch, *args)
        for opt in (trainer.d_optimizer, trainer.g_optimizer):
            if not getattr(opt.scale_loss, "calls", 0):
                raise RuntimeError("train_step never passed a loss through optimizer.scale_loss: under a strategy "
                                   "its gradients would be summed over replicas, not averaged (gan/strategy.py)")
        return out

    return step


# ------------------------------------------------------------------------------------------------- data
def distribute(dist: Distribution, ds: tf.data.Dataset):
    """Global batches (every element a batch-first tensor or tuple of them, [B, ...]) -> this worker's replicas'
    slices: replica r of R gets rows [r·B/R, (r+1)·B/R) of each batch. Without a strategy: `ds` itself."""
    if dist.strategy is None:
        return ds
    n = dist.replicas

    def dataset_fn(ctx: tf.distribute.InputContext):
        local = n // ctx.num_input_pipelines  # replicas fed by this worker, in replica-id order
        first = ctx.input_pipeline_id * local

        def split(*batch):
            def cut(x):  # [B, ...] -> [local, B/R, ...]
                return tf.reshape(x, [n, x.shape[0] // n, *x.shape[1:]])[first:first + local]

            parts = tf.nest.map_structure(cut, batch)
            return tf.data.Dataset.from_tensor_slices(parts)  # one element per local replica, in order

        return ds.flat_map(split).prefetch(local)

    # elements go to this worker's replicas round-robin: element k feeds local replica k % local
    return dist.strategy.distribute_datasets_from_function(dataset_fn)


def resume_checkpoint(resume_dir) -> str | None:
    """The checkpoint a resumed run restores, read by every worker from the chief's run folder."""
    if not resume_dir:
        return None
    from gan.run_dir import CHECKPOINTS

    return tf.train.latest_checkpoint(str(Path(resume_dir) / CHECKPOINTS))

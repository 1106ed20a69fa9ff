"""TensorFlow set-up shared by the training stages: quiet logs, determinism, distribution.

Same weights on every machine (with the CPU pins of :mod:`stages.common.cpu` and the exact batch
normalisation of :mod:`stages.models.numerics`): Grappler, whose arithmetic rewrites would turn
``x / sqrt(y)`` back into ``x * rsqrt(y)`` and ``1 / x`` into ``Reciprocal`` (approximate x86
instructions whose last bits differ between CPU makers), is off.
"""

from __future__ import annotations

import os

# Before TensorFlow loads: keep its C++ log noise off the console. oneDNN's CPU kernels stay on
# (TensorFlow's default; stages.common.cpu caps them at AVX2): with one intra-op thread (below)
# their summation order is fixed, and they train ResNet-50 about 4x faster than TensorFlow's own
# kernels on this 2-core machine.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

STRATEGIES = ("default", "mirrored", "multi_worker")


def make_deterministic(seed: int) -> None:
    """Same params and code -> same weights: seed every generator and force deterministic ops."""
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    # Graphs run as written: Grappler would rewrite x / sqrt(y) to x * rsqrt(y) and 1 / x to
    # Reciprocal (see stages.models.numerics). Its passes also took 2-10 s of each stage's first
    # step here, more than they saved over the embedded default's steps (each within ~10%).
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    # One thread per op: a multi-threaded CPU kernel (oneDNN's or Eigen's) may split a large
    # reduction (a convolution's filter gradient sums over batch x pixels) into shards whose
    # partial sums are added in completion order, so forced reruns gave other weights (seen with
    # oneDNN and the default thread count).
    # One op at a time as well: with TensorFlow's default of one inter-op thread per core, reruns
    # of finetune@covidnet_cxr_s with identical inputs gave other weights now and then (a step's
    # loss equal, the weights after its update not), so some op's result depends on which others
    # run beside it; with one inter-op thread none did (README, "Run to run"). It costs CXR-S about
    # half as much again per training step here. tf.data keeps its own threads, so decoding still
    # runs beside the training step.
    for setter in (tf.config.threading.set_intra_op_parallelism_threads,
                   tf.config.threading.set_inter_op_parallelism_threads):
        try:
            setter(1)
        except RuntimeError:
            pass  # TensorFlow already initialised (e.g. in tests); the setting cannot change any more


class KerasMultiWorkerStrategy(tf.distribute.MultiWorkerMirroredStrategy):
    """``MultiWorkerMirroredStrategy`` whose ``reduce`` takes what Keras 3's ``fit`` gives it.

    Across two or more workers, Keras 3.15 with TensorFlow 2.21 could not run ``fit`` at all
    (keras-team/keras#20585, open; seen here with two workers on 127.0.0.1):

    - it reduces the first (features, labels) batch to build the model, a nest, which TensorFlow's
      ``reduce`` does not take ("TODO: support value being a nest", ``distribute_lib.py``): "Attempt
      to convert a value (PerReplica...)";
    - it averages every step's logs with ``axis=0``, and a loss is a scalar: "Invalid reduction
      dimension 0 for input with 0 dimensions".

    Here each leaf is reduced on its own, and a scalar is averaged across the replicas (what Keras
    does with one worker: the mean over the stacked replicas' values).
    """

    def reduce(self, reduce_op: str | tf.distribute.ReduceOp, value: object, axis: int | None) -> object:
        def leaf(v: object) -> tf.Tensor:
            local = self.experimental_local_results(v)[0]
            scalar = axis is not None and getattr(local, "shape", None) is not None and local.shape.rank == 0
            return super(KerasMultiWorkerStrategy, self).reduce(reduce_op, v, None if scalar else axis)
        return tf.nest.map_structure(leaf, value)


def get_strategy(name: str) -> tf.distribute.Strategy:
    """``train.strategy``: the default (one device), mirrored (all local devices) or multi-worker.

    ``multi_worker`` reads the cluster from the ``TF_CONFIG`` environment variable, as
    ``tf.distribute.MultiWorkerMirroredStrategy`` documents.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        if "TF_CONFIG" not in os.environ:
            raise SystemExit("train.strategy=multi_worker needs the TF_CONFIG environment variable")
        return KerasMultiWorkerStrategy()
    raise SystemExit(f"train.strategy must be one of {STRATEGIES}, got {name!r}")


def fine_tuned_for_test(params: dict, model_name: str, tables, weights, stage: str):
    """``(model, architecture, test)``: the deterministic set-up, ``model_name`` built at its
    params with the fine-tuned ``weights``, and the test rows of ``tables/split.csv`` (the
    preamble of the stages that apply a fine-tuned model: ``evaluate``, ``export``)."""
    from pathlib import Path

    from stages.common.io import read_table
    from stages.models import load_model, model_params
    from stages.tasks import SEVERITY

    make_deterministic(int(params["train"]["seed"]))
    split = read_table(Path(tables) / "split.csv")
    test = split[split.split == "test"].reset_index(drop=True)
    if test.empty:
        raise SystemExit(f"{stage}: the test split is empty")
    architecture = model_params(params, model_name)
    return load_model(architecture, len(SEVERITY.class_names), SEVERITY.head, weights), architecture, test

"""One training process of ``tests/test_multi_worker.py``: a tiny model, a few steps, weights saved.

    TF_CONFIG='{"cluster": ..., "task": ...}' python tests/multi_worker_job.py --strategy multi_worker --out W.npz
    python tests/multi_worker_job.py --strategy default --out W.npz      # the one-worker reference

The training path is the pipeline's: ``make_deterministic``, ``get_strategy``, ``compile_for_training``
(Adam with the warm-up then linear-decay schedule) and ``fit`` with model selection on a
validation set. Two things are stand-ins, so that the two runs can be equal at all:

- the model has no batch normalisation: Keras normalises each replica's share of a batch on its own,
  so a model with it differs from the one-worker run however exactly the gradients are summed
  (measured: about 1e-4 after 6 steps with one such layer; the README's scale-out section);
- the batches come in a fixed order, without the stage's seeded reshuffling: with a strategy, Keras
  draws one batch from an iterator it then throws away, and a reshuffling ``tf.data`` pipeline
  moves on by as many reshuffles as that iterator prefetched, which depends on timing.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stages.training.setup import get_strategy, make_deterministic  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

SEED = 2022
IMAGE_SIZE = 16
GLOBAL_BATCH = 8  # split over the replicas: 4 images per worker with two workers
STEPS, EPOCHS = 3, 2
LEARNING_RATE = 1e-2


def tiny_model() -> keras.Model:
    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(2, activation="softmax", name="head")(x)
    return keras.Model(inputs, outputs)


def made_up_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images in [0, 255], classes alternating, class 1 brighter (learnable in a few steps)."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    images = rng.uniform(0, 160, (n, IMAGE_SIZE, IMAGE_SIZE, 3)) + 80 * labels[:, None, None, None]
    return images.astype(np.float32), labels.astype(np.int32)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--strategy", required=True, help="train.strategy: default | multi_worker")
    parser.add_argument("--out", type=Path, required=True, help="where this process writes its weights (.npz)")
    args = parser.parse_args(argv)

    from stages.training.fit import compile_for_training, fit

    make_deterministic(SEED)
    strategy = get_strategy(args.strategy)
    x, y = made_up_images(GLOBAL_BATCH * STEPS, SEED)
    # The global batch: with a strategy, Keras gives each replica its share of every batch.
    train = tf.data.Dataset.from_tensor_slices((x, y)).repeat().batch(GLOBAL_BATCH)
    val_x, val_y = made_up_images(2 * GLOBAL_BATCH, SEED + 1)
    val = tf.data.Dataset.from_tensor_slices((val_x, val_y)).batch(GLOBAL_BATCH)
    with strategy.scope():
        model = tiny_model()
        compile_for_training(model, LEARNING_RATE, STEPS * EPOCHS, warmup_fraction=0.2)
    initial = model.get_weights()
    result = fit(model, train, STEPS, EPOCHS, validation=(val, val_y), verbose=0)
    np.savez(args.out, **{f"weight{i}": w for i, w in enumerate(model.get_weights())},
             **{f"initial{i}": w for i, w in enumerate(initial)}, replicas=strategy.num_replicas_in_sync,
             best_epoch=result.best_epoch, history=json.dumps(result.history, sort_keys=True))


if __name__ == "__main__":
    main()

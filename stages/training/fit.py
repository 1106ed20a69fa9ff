"""Training: a warm-up-then-linear-decay schedule, model selection on the validation split, curves.

Choices here are ours (the paper gives only Adam, its learning rate, epochs and batch size):

- **Learning rate**: linear warm-up over the first ``warmup_fraction`` of the steps, then a linear
  decay to zero, so the last epochs settle instead of jumping between minima (the seed-to-seed
  spread of the test metrics is what ``benchmarks/seeds.py`` measures). Only additions,
  multiplications and divisions, so it is the same on every CPU.
- **Model selection**: after every epoch the validation split is predicted and scored; the epoch
  with the lowest *balanced* cross-entropy (each level weighs the same, as in the balanced
  training batches) is kept. A continuous score: accuracy on a 54-image split saturated at 100%
  and left the choice to ties.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from stages.evaluation.classification import balanced_accuracy, balanced_log_loss, roc_auc

SELECTED_BY = "lowest balanced validation cross-entropy"


@dataclass
class FitResult:
    history: dict[str, list[float]]
    best_epoch: int  # 1-based
    best: dict[str, float]


@keras.saving.register_keras_serializable(package="stages")
class WarmupLinearDecay(keras.optimizers.schedules.LearningRateSchedule):
    """``peak * min((step + 1) / warmup, (total - step) / (total - warmup))``, never below zero."""

    def __init__(self, peak: float, total_steps: int, warmup_steps: int = 0):
        if total_steps <= warmup_steps:
            raise ValueError(f"total_steps ({total_steps}) must exceed warmup_steps ({warmup_steps})")
        self.peak, self.total_steps, self.warmup_steps = float(peak), int(total_steps), int(warmup_steps)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        rising = (step + 1.0) / float(max(self.warmup_steps, 1)) if self.warmup_steps else tf.constant(1.0)
        falling = (float(self.total_steps) - step) / float(self.total_steps - self.warmup_steps)
        return self.peak * tf.maximum(tf.minimum(rising, falling), 0.0)

    def get_config(self) -> dict:
        return {"peak": self.peak, "total_steps": self.total_steps, "warmup_steps": self.warmup_steps}


def validation_scores(targets: np.ndarray, probabilities: np.ndarray) -> dict[str, float]:
    """The per-epoch validation scores (probabilities: [n, 2], column 1 the positive class)."""
    predicted = probabilities.argmax(axis=1)
    return {"val_loss_balanced": round(balanced_log_loss(targets, probabilities), 6),
            "val_accuracy": round(float(np.mean(predicted == targets)), 6),
            "val_accuracy_balanced": round(balanced_accuracy(targets, predicted), 6),
            "val_roc_auc": roc_auc(targets, probabilities[:, 1])}


class SelectBest(keras.callbacks.Callback):
    """Score the validation split after every epoch; keep the weights of the lowest balanced loss.

    The scores join the epoch's logs (for the history and the DVCLive curves). Ties, which a
    continuous loss makes rare, keep the earlier epoch.
    """

    def __init__(self, validation: tf.data.Dataset, targets, verbose: bool = True):
        super().__init__()
        self.validation, self.targets, self.verbose = validation, np.asarray(targets), verbose
        self.best_score: float | None = None
        self.best_weights = None
        self.best_epoch = 0
        self.best_logs: dict[str, float] = {}

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs if logs is not None else {}
        scores = validation_scores(self.targets, predict_proba(self.model, self.validation))
        logs.update(scores)
        if self.verbose:
            print(f"epoch {epoch + 1}: " + ", ".join(f"{k} {v}" for k, v in scores.items()), file=sys.stderr)
        if self.best_score is None or scores["val_loss_balanced"] < self.best_score:
            self.best_score, self.best_epoch = scores["val_loss_balanced"], epoch + 1
            self.best_weights = [w.copy() for w in self.model.get_weights()]
            self.best_logs = {k: float(v) for k, v in logs.items() if v is not None and k != "learning_rate"}


class LiveCurves(keras.callbacks.Callback):
    """Log every epoch's metrics to DVCLive (plots as TSV, no timestamps: outputs stay byte-stable)."""

    def __init__(self, live):
        super().__init__()
        self.live = live

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        for name, value in sorted((logs or {}).items()):
            if name == "learning_rate" or value is None:
                continue
            self.live.log_metric(name, round(float(value), 6))
        self.live.next_step()


def compile_for_training(model: keras.Model, learning_rate: float, total_steps: int | None = None,
                         warmup_fraction: float = 0.0) -> None:
    """Adam (with the warm-up/decay schedule when ``total_steps`` is given), cross-entropy, accuracy.

    Every variable is created here, before ``fit``: Keras otherwise creates the optimizer slots
    and the accuracy counters while tracing the first train step, and TensorFlow then traces the
    step a second time (about 15 s of each training stage on this machine).
    """
    rate = learning_rate
    if total_steps:
        rate = WarmupLinearDecay(learning_rate, total_steps, int(round(warmup_fraction * total_steps)))
    model.compile(optimizer=keras.optimizers.Adam(rate), loss="sparse_categorical_crossentropy",
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")], jit_compile=False)
    model.optimizer.build(model.trainable_variables)


def fit(model: keras.Model, train_data, steps_per_epoch: int, epochs: int, validation=None,
        live=None, verbose: int = 2) -> FitResult:
    """Train; with ``validation`` = (dataset, targets), keep the best epoch's weights (see module)."""
    callbacks: list[keras.callbacks.Callback] = []
    selector = SelectBest(*validation) if validation is not None else None
    if selector:
        callbacks.append(selector)
    if live is not None:
        callbacks.append(LiveCurves(live))
    history = model.fit(train_data, steps_per_epoch=steps_per_epoch, epochs=epochs, callbacks=callbacks,
                        verbose=verbose, shuffle=False)  # the tf.data pipeline already shuffles, seeded
    logs = {k: [round(float(v), 6) for v in vs if v is not None] for k, vs in history.history.items()
            if k != "learning_rate"}
    if selector and selector.best_weights is not None:
        model.set_weights(selector.best_weights)
        return FitResult(logs, selector.best_epoch, selector.best_logs)
    return FitResult(logs, epochs, {k: v[-1] for k, v in logs.items() if v})


def predict_proba(model: keras.Model, dataset) -> np.ndarray:
    return np.asarray(model.predict(dataset, verbose=0))

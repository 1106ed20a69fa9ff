"""Training with model selection on the validation split and per-epoch curves through DVCLive."""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np


@dataclass
class FitResult:
    history: dict[str, list[float]]
    best_epoch: int  # 1-based
    best: dict[str, float]


class SelectBest(keras.callbacks.Callback):
    """Keep the weights of the epoch with the best validation accuracy (ties: lower val loss)."""

    def __init__(self, monitor: str = "val_accuracy", tie_breaker: str = "val_loss"):
        super().__init__()
        self.monitor, self.tie_breaker = monitor, tie_breaker
        self.best_key: tuple[float, float] | None = None
        self.best_weights = None
        self.best_epoch = 0
        self.best_logs: dict[str, float] = {}

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        key = (float(logs[self.monitor]), -float(logs.get(self.tie_breaker, 0.0)))
        if self.best_key is None or key > self.best_key:
            self.best_key, self.best_epoch = key, epoch + 1
            self.best_weights = [w.copy() for w in self.model.get_weights()]
            self.best_logs = {k: float(v) for k, v in logs.items()}


class LiveCurves(keras.callbacks.Callback):
    """Log every epoch's metrics to DVCLive (plots as TSV, no timestamps: outputs stay byte-stable)."""

    def __init__(self, live):
        super().__init__()
        self.live = live

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        for name, value in sorted((logs or {}).items()):
            if name == "learning_rate":
                continue
            self.live.log_metric(name, round(float(value), 6))
        self.live.next_step()


def compile_for_training(model: keras.Model, learning_rate: float) -> None:
    """Adam, sparse cross-entropy and accuracy, with every variable created before ``fit``.

    Keras otherwise creates the optimizer slots and the accuracy counters while tracing the first
    train step, and TensorFlow then traces the step a second time; building them here halves the
    graph-construction time (about 15 s of each training stage on this machine).
    """
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy",
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    model.optimizer.build(model.trainable_variables)


def fit(model: keras.Model, train_data, steps_per_epoch: int, epochs: int, validation_data=None,
        live=None, select_best: bool = True, verbose: int = 2) -> FitResult:
    callbacks: list[keras.callbacks.Callback] = []
    selector = SelectBest() if (select_best and validation_data is not None) else None
    if selector:
        callbacks.append(selector)
    if live is not None:
        callbacks.append(LiveCurves(live))
    history = model.fit(train_data, steps_per_epoch=steps_per_epoch, epochs=epochs,
                        validation_data=validation_data, callbacks=callbacks, verbose=verbose,
                        shuffle=False)  # the tf.data pipeline already shuffles, seeded
    logs = {k: [round(float(v), 6) for v in vs] for k, vs in history.history.items()}
    if selector and selector.best_weights is not None:
        model.set_weights(selector.best_weights)
        return FitResult(logs, selector.best_epoch, selector.best_logs)
    last = {k: v[-1] for k, v in logs.items()}
    return FitResult(logs, epochs, last)


def predict_proba(model: keras.Model, dataset) -> np.ndarray:
    return np.asarray(model.predict(dataset, verbose=0))

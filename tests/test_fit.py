"""Model selection in stages.training.fit, driven by scripted epochs (issue 20): a stand-in model
whose validation probabilities and weights are set per epoch, so the best epoch, the tie rule and
the restored weights are known by hand. No network is trained."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stages.training import fit as fitting
from stages.training.fit import FitResult, LiveCurves, SelectBest, fit

TARGETS = np.array([0, 1])


def probabilities(p_right: float) -> np.ndarray:
    """Both validation images given probability ``p_right`` for their true class."""
    return np.array([[p_right, 1 - p_right], [1 - p_right, p_right]])


def loss(p_right: float) -> float:
    """Balanced cross-entropy by hand: each level's mean of -ln p, then their mean."""
    return -math.log(p_right)


class ScriptedModel:
    """Plays Keras' part: epoch e has weights [e, -e] and the validation probabilities script[e]."""

    def __init__(self, script: list[float]):
        self.script, self.epoch, self.set_to = script, 0, None
        self.predicted_on: list = []  # (dataset, verbose) of every predict call
        self.fit_arguments: dict = {}

    def predict(self, dataset, verbose="not given"):
        self.predicted_on.append((dataset, verbose))
        return probabilities(self.script[self.epoch])

    def get_weights(self):
        return [np.array([self.epoch + 1.0]), np.array([-(self.epoch + 1.0)])]

    def set_weights(self, weights):
        self.set_to = [w.copy() for w in weights]

    def fit(self, data, steps_per_epoch, epochs, callbacks, verbose, shuffle):
        """As keras.Model.fit: per epoch the callbacks update the logs, and History keeps them."""
        self.fit_arguments = {"data": data, "steps_per_epoch": steps_per_epoch, "epochs": epochs,
                              "verbose": verbose, "shuffle": shuffle}
        history: dict[str, list] = {}
        for epoch in range(epochs):
            self.epoch = epoch
            logs = {"loss": 1.0 / (epoch + 1), "accuracy": 0.5 + epoch / 100, "learning_rate": 0.1}
            for callback in callbacks:
                callback.set_model(self)
                callback.on_epoch_end(epoch, logs)
            for key, value in logs.items():
                history.setdefault(key, []).append(value)
        return type("History", (), {"history": history})()


def test_the_lowest_balanced_loss_is_kept_and_its_weights_restored():
    script = [0.6, 0.9, 0.7, 0.8]  # losses -ln p: 0.511, 0.105 (best), 0.357, 0.223
    model = ScriptedModel(script)
    result = fit(model, "train", steps_per_epoch=3, epochs=4, validation=("val", TARGETS), verbose=0)
    assert isinstance(result, FitResult)
    assert result.best_epoch == 2
    np.testing.assert_array_equal(model.set_to[0], [2.0])  # epoch 2's weights (1-based), restored
    np.testing.assert_array_equal(model.set_to[1], [-2.0])
    assert result.best["val_loss_balanced"] == pytest.approx(loss(0.9), abs=1e-6)
    assert result.best["loss"] == 0.5 and result.best["accuracy"] == pytest.approx(0.51)
    assert "learning_rate" not in result.best and "learning_rate" not in result.history
    assert result.history["val_loss_balanced"] == [round(loss(p), 6) for p in script]
    assert result.history["val_accuracy"] == [1.0] * 4
    assert result.history["loss"] == [1.0, 0.5, round(1 / 3, 6), 0.25]


def test_a_tie_keeps_the_earlier_epoch():
    model = ScriptedModel([0.7, 0.9, 0.9, 0.6])
    result = fit(model, "train", 1, 4, validation=("val", TARGETS), verbose=0)
    assert result.best_epoch == 2
    np.testing.assert_array_equal(model.set_to[0], [2.0])


def test_the_first_epoch_is_kept_when_nothing_improves():
    model = ScriptedModel([0.9, 0.8, 0.7])
    result = fit(model, "train", 1, 3, validation=("val", TARGETS), verbose=0)
    assert result.best_epoch == 1
    np.testing.assert_array_equal(model.set_to[0], [1.0])
    assert result.best["val_loss_balanced"] == pytest.approx(loss(0.9), abs=1e-6)


def test_the_last_epoch_can_win():
    model = ScriptedModel([0.6, 0.7, 0.95])
    assert fit(model, "train", 1, 3, validation=("val", TARGETS), verbose=0).best_epoch == 3
    np.testing.assert_array_equal(model.set_to[0], [3.0])


def test_without_validation_the_last_epoch_is_kept_and_nothing_restored():
    model = ScriptedModel([0.6, 0.9, 0.7])
    result = fit(model, "train", 1, 3, validation=None, verbose=0)
    assert result.best_epoch == 3 and model.set_to is None
    assert result.best == {"loss": round(1 / 3, 6), "accuracy": 0.52}
    assert "val_loss_balanced" not in result.history and model.predicted_on == []


def test_fit_passes_its_arguments_to_keras_and_predicts_the_validation_set_quietly():
    model = ScriptedModel([0.6, 0.9])
    fit(model, "train-data", steps_per_epoch=7, epochs=2, validation=("val-data", TARGETS), verbose=0)
    # shuffle=False: the tf.data pipeline shuffles, seeded; Keras must not shuffle again.
    assert model.fit_arguments == {"data": "train-data", "steps_per_epoch": 7, "epochs": 2, "verbose": 0,
                                   "shuffle": False}
    assert model.predicted_on == [("val-data", 0), ("val-data", 0)]
    fit(model, "train-data", 1, 1)
    assert model.fit_arguments["verbose"] == 2  # one line per epoch by default
    assert SelectBest("val", [0, 1]).verbose is True


def test_no_epoch_leaves_the_weights_alone():
    model = ScriptedModel([])
    result = fit(model, "train", 1, 0, validation=("val", TARGETS), verbose=0)
    assert (result.best_epoch, result.best, model.set_to) == (0, {}, None)


def test_select_best_adds_the_scores_to_the_epoch_logs(capsys):
    selector = SelectBest("val", [0, 1], verbose=True)
    selector.set_model(ScriptedModel([0.75]))
    logs = {"loss": 0.3, "learning_rate": 0.01}
    selector.on_epoch_end(0, logs)
    assert logs["val_loss_balanced"] == round(loss(0.75), 6) and logs["val_accuracy"] == 1.0
    assert logs["val_accuracy_balanced"] == 1.0 and logs["val_roc_auc"] == 1.0
    assert selector.best_logs == {"loss": 0.3, "val_loss_balanced": round(loss(0.75), 6), "val_accuracy": 1.0,
                                  "val_accuracy_balanced": 1.0, "val_roc_auc": 1.0}
    assert capsys.readouterr().err.startswith(f"epoch 1: val_loss_balanced {round(loss(0.75), 6)}, val_accuracy 1.0")
    quiet = SelectBest("val", [0, 1], verbose=False)
    quiet.set_model(ScriptedModel([0.75]))
    quiet.on_epoch_end(0, None)
    assert capsys.readouterr().err == "" and quiet.best_epoch == 1


def test_select_best_leaves_out_undefined_scores():
    """One class only: ROC AUC is undefined (None) and stays out of the best epoch's logs."""
    selector = SelectBest("val", [1, 1], verbose=False)
    model = ScriptedModel([0.8])
    model.predict = lambda dataset, verbose=0: np.array([[0.2, 0.8], [0.4, 0.6]])
    selector.set_model(model)
    logs: dict = {}
    selector.on_epoch_end(0, logs)
    assert logs["val_roc_auc"] is None and "val_roc_auc" not in selector.best_logs
    assert selector.best_score == pytest.approx((-math.log(0.8) - math.log(0.6)) / 2, abs=1e-6)


class Live:
    def __init__(self):
        self.steps: list[dict] = [{}]

    def log_metric(self, name, value):
        self.steps[-1][name] = value

    def next_step(self):
        self.steps.append({})


def test_live_curves_log_every_metric_but_the_learning_rate_once_per_epoch():
    live = Live()
    curves = LiveCurves(live)
    curves.on_epoch_end(0, {"loss": 0.12345678, "learning_rate": 0.1, "val_roc_auc": None, "accuracy": 1})
    curves.on_epoch_end(1, None)
    assert live.steps == [{"accuracy": 1.0, "loss": 0.123457}, {}, {}]
    model = ScriptedModel([0.6, 0.9])
    live = Live()
    fit(model, "train", 1, 2, validation=("val", TARGETS), live=live, verbose=0)
    # The validation scores reach the curves: SelectBest runs before LiveCurves.
    assert [step.get("val_loss_balanced") for step in live.steps[:2]] == [round(loss(0.6), 6), round(loss(0.9), 6)]


def test_validation_scores_are_rounded_to_six_decimals():
    from stages.training.fit import validation_scores

    scores = validation_scores(np.array([0, 0, 1]), np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7]]))
    assert scores["val_accuracy"] == 0.666667 and scores["val_accuracy_balanced"] == 0.75
    scores = validation_scores(np.array([0, 0, 0, 1]), np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.4, 0.6]]))
    assert scores["val_accuracy_balanced"] == 0.666667  # (1/3 + 1) / 2


def test_predict_proba_is_the_models_prediction_as_an_array():
    model = ScriptedModel([0.7])
    np.testing.assert_array_equal(fitting.predict_proba(model, "data"), probabilities(0.7))
    assert model.predicted_on == [("data", 0)]  # quietly: no progress bar per epoch


def test_schedule_config_and_its_checks():
    from stages.training.fit import WarmupLinearDecay

    schedule = WarmupLinearDecay(2e-3, total_steps=20, warmup_steps=5)
    assert schedule.get_config() == {"peak": 2e-3, "total_steps": 20, "warmup_steps": 5}
    assert WarmupLinearDecay(**schedule.get_config()).get_config() == schedule.get_config()
    with pytest.raises(ValueError, match=r"total_steps \(5\) must exceed warmup_steps \(5\)"):
        WarmupLinearDecay(1.0, 5, 5)
    # A warm-up of one step: the first step is already at the peak.
    assert float(WarmupLinearDecay(1.0, 4, 1)(0)) == 1.0
    # By hand: step 4 of the warm-up is 5/5 of the peak; step 12 is (20 - 12) / 15 of it.
    assert float(schedule(4)) == pytest.approx(2e-3) and float(schedule(12)) == pytest.approx(8 / 15 * 2e-3)
    assert float(schedule(0)) == pytest.approx(2e-3 / 5) and float(schedule(25)) == 0.0


def test_compile_for_training_builds_the_schedule_and_the_optimizer_slots():
    import keras

    from stages.training.fit import WarmupLinearDecay, compile_for_training

    def tiny():
        inputs = keras.Input((3,))
        return keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))

    model = tiny()
    compile_for_training(model, 1e-3, total_steps=40, warmup_fraction=0.14)
    schedule = model.optimizer._learning_rate  # Keras keeps the schedule object here
    assert isinstance(schedule, WarmupLinearDecay)
    assert schedule.get_config() == {"peak": 1e-3, "total_steps": 40, "warmup_steps": 6}  # round(5.6)
    assert model.optimizer.built and len(model.optimizer.variables) > 1
    assert [(type(m).__name__, m.name) for m in model._compile_metrics._user_metrics] == [
        ("SparseCategoricalAccuracy", "accuracy")]
    assert model.loss == "sparse_categorical_crossentropy"
    assert model.jit_compile is False  # XLA's CPU depthwise convolution was slower (README, Benchmarks)
    constant = tiny()
    compile_for_training(constant, 5e-4)
    assert float(constant.optimizer.learning_rate) == pytest.approx(5e-4)
    no_warmup = tiny()
    compile_for_training(no_warmup, 1e-3, total_steps=10)  # no warm-up unless asked for
    assert no_warmup.optimizer._learning_rate.get_config()["warmup_steps"] == 0

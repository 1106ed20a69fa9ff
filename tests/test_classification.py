import pytest

from stages.evaluation.classification import classification_report


def expand(matrix):
    y_true, y_pred = [], []
    for t, row in enumerate(matrix):
        for p, count in enumerate(row):
            y_true += [t] * count
            y_pred += [p] * count
    return y_true, y_pred


def test_paper_table4_gives_paper_table3():
    # Table 4 re-laid out as rows = true level: true L1 = 48 + 4, true L2 = 7 + 91.
    report = classification_report(*expand([[48, 4], [7, 91]]), ["Level 1", "Level 2"])
    assert report["n"] == 150
    assert report["accuracy"] == pytest.approx(0.9267, abs=1e-4)
    assert report["sensitivity"] == {"Level 1": pytest.approx(0.9231, abs=1e-4),
                                     "Level 2": pytest.approx(0.9286, abs=1e-4)}
    assert report["ppv"] == {"Level 1": pytest.approx(0.8727, abs=1e-4),
                             "Level 2": pytest.approx(0.9579, abs=1e-4)}
    assert report["majority_class_rate"] == pytest.approx(98 / 150, abs=1e-6)
    assert report["confusion_matrix"]["matrix"]["Level 1"] == {"Level 1": 48, "Level 2": 4}
    assert report["confusion_matrix"]["rows"] == "true"


def test_missing_class_gives_null_not_zero():
    report = classification_report([1, 1], [1, 1], ["a", "b"])
    assert report["sensitivity"]["a"] is None and report["ppv"]["a"] is None
    assert report["sensitivity"]["b"] == 1.0

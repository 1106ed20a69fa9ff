"""The two classification tasks the pipeline trains: their heads, class names and targets.

One module for the vocabulary that ``pretrain``, ``finetune``, ``evaluate``, Table 2 and the
report share, so no stage imports another stage for it.

- ``PRETRAIN``: COVIDx-style COVID-19 negative/positive, on the ``covidx_*`` head (ours: the
  backbone's own 2-way head; only layers outside it move on to fine-tuning).
- ``SEVERITY``: the paper's airspace severity, Level 1 (opacities in 1-2 of the 6 lung zones) or
  Level 2 (3 or more), on the ``severity_*`` head.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class Task:
    head: str  # prefix of the head's layer names: {head}_dense, {head}_logits, ...
    class_names: tuple[str, ...]  # class index -> name, as the model's outputs are ordered

    def targets(self, labels: Iterable[str]) -> list[int]:
        """Class names -> class indices (a name that is not a class raises ValueError)."""
        return [self.class_names.index(label) for label in labels]


PRETRAIN = Task(head="covidx", class_names=("negative", "positive"))
SEVERITY = Task(head="severity", class_names=("level1", "level2"))
# How tables, predictions and plots name the two severity classes.
LEVEL_NAMES = ("Level 1", "Level 2")


def level_targets(levels: Iterable) -> list[int]:
    """Airspace level 1/2 -> class index 0/1 (anything else raises ValueError)."""
    targets = [int(level) - 1 for level in levels]
    bad = sorted({t + 1 for t in targets if t not in (0, 1)})
    if bad:
        raise ValueError(f"airspace levels must be 1 or 2, got {bad}")
    return targets

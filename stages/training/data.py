"""tf.data input pipelines over the PNGs that ``ingest`` wrote (never DICOM)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import tensorflow as tf

from stages.training.augment import AugmentConfig, augment_batch

# Decoding in parallel keeps the CPU busy; deterministic=True keeps the element order fixed.
PARALLEL_CALLS = 2


def _decoder(image_size: int | None):
    """Grayscale PNG -> 3 channels in [0, 255]: the paper's network takes (N, 480, 480, 3).

    With ``image_size`` the stored PNG is resized on load (area averaging), so models with a
    smaller input (the embedded baselines) train on the same images as the others.
    """
    def decode(path: tf.Tensor) -> tf.Tensor:
        image = tf.cast(tf.io.decode_png(tf.io.read_file(path), channels=1), tf.float32)
        if image_size is not None:
            image = tf.image.resize(image, (image_size, image_size), method="area")
        return tf.image.grayscale_to_rgb(image)
    return decode


def _paths(root: Path, relative: Sequence[str]) -> list[str]:
    paths = [str(root / p) for p in relative]
    missing = [p for p in paths if not Path(p).exists()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} image(s) listed but missing, first: {missing[0]}")
    return paths


def evaluation_dataset(root: Path, relative: Sequence[str], labels: Sequence[int],
                       batch_size: int, image_size: int | None = None) -> tf.data.Dataset:
    """Ordered, unaugmented batches (validation, test)."""
    data = tf.data.Dataset.from_tensor_slices((_paths(root, relative), np.asarray(labels, np.int32)))
    decode = _decoder(image_size)
    return data.map(lambda p, y: (decode(p), y), num_parallel_calls=PARALLEL_CALLS,
                    deterministic=True).batch(batch_size).prefetch(2)


def _with_augmentation(batches: tf.data.Dataset, seed: int, cfg: AugmentConfig | None) -> tf.data.Dataset:
    if cfg is None:
        return batches
    # The batch index seeds the draw, so the same run gives the same warps in any thread order.
    indexed = batches.enumerate()

    def warp(index, batch):
        return augment_batch(batch[0], tf.stack([seed, tf.cast(index, tf.int32)]), cfg), batch[1]

    return indexed.map(warp, num_parallel_calls=PARALLEL_CALLS, deterministic=True)


def balanced_dataset(root: Path, relative: Sequence[str], labels: Sequence[int], batch_size: int,
                     seed: int, augment: AugmentConfig | None = None,
                     image_size: int | None = None) -> tf.data.Dataset:
    """Endless batches with the same number of images of each class (the paper's batch balancing).

    Each class is its own reshuffled, repeating stream; every batch takes batch_size / n_classes
    images from each stream, so the minority class is seen as often as the majority class.
    """
    labels = np.asarray(labels, np.int32)
    classes = sorted(set(labels.tolist()))
    if batch_size % len(classes):
        raise ValueError(f"batch size {batch_size} does not split evenly over {len(classes)} classes")
    per_class = batch_size // len(classes)
    decode = _decoder(image_size)
    streams = []
    for offset, cls in enumerate(classes):
        chosen = [p for p, y in zip(relative, labels) if y == cls]
        stream = tf.data.Dataset.from_tensor_slices((_paths(root, chosen), np.full(len(chosen), cls, np.int32)))
        stream = stream.shuffle(len(chosen), seed=seed + offset, reshuffle_each_iteration=True).repeat()
        stream = stream.map(lambda p, y: (decode(p), y), num_parallel_calls=PARALLEL_CALLS, deterministic=True)
        streams.append(stream.batch(per_class))
    zipped = tf.data.Dataset.zip(tuple(streams))
    batches = zipped.map(lambda *parts: (tf.concat([p[0] for p in parts], 0), tf.concat([p[1] for p in parts], 0)))
    return _with_augmentation(batches, seed, augment).prefetch(2)

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from stages.training.augment import AugmentConfig, augment_batch
from stages.training.data import balanced_dataset, evaluation_dataset

NO_AUGMENT = AugmentConfig(translation=0, rotation_degrees=0, horizontal_flip=False, zoom=0, intensity=0)


def ramp_batch(size=16):
    ramp = np.tile(np.arange(size, dtype=np.float32) * 10, (size, 1))
    return tf.constant(np.stack([ramp] * 3, -1)[None])


def test_zero_augmentation_is_identity():
    image = ramp_batch()
    out = augment_batch(image, tf.constant([1, 2]), NO_AUGMENT)
    np.testing.assert_allclose(out.numpy(), image.numpy(), atol=1e-3)


def test_flip_mirrors_horizontally():
    image = ramp_batch()
    cfg = AugmentConfig(translation=0, rotation_degrees=0, horizontal_flip=True, zoom=0, intensity=0)
    outs = [augment_batch(image, tf.constant([0, s]), cfg).numpy()[0] for s in range(12)]
    flipped = [o for o in outs if not np.allclose(o, image.numpy()[0], atol=1e-3)]
    assert flipped and len(flipped) < len(outs)  # about half of the draws flip
    np.testing.assert_allclose(flipped[0], image.numpy()[0][:, ::-1], atol=1e-3)


def test_augmentation_seeded_and_bounded():
    batch = tf.concat([ramp_batch()] * 4, 0)
    cfg = AugmentConfig()
    a = augment_batch(batch, tf.constant([3, 4]), cfg).numpy()
    b = augment_batch(batch, tf.constant([3, 4]), cfg).numpy()
    c = augment_batch(batch, tf.constant([3, 5]), cfg).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.min() >= 0 and a.max() <= 255


def test_brightness_multiplies_and_shift_adds():
    """Intensity only (no warp): COVID-Net's brightness scales every pixel of an image by one factor
    in [0.9, 1.1] (0 stays 0); our shift adds one offset in [-25.5, 25.5]."""
    image = ramp_batch() + 40.0  # 40..190: no shift or factor reaches 0 or 255
    only = dict(translation=0, rotation_degrees=0, horizontal_flip=False, zoom=0, intensity=0.1)
    for seed in range(5):
        bright = augment_batch(image, tf.constant([7, seed]), AugmentConfig(**only)).numpy()
        ratio = bright / image.numpy()
        assert np.ptp(ratio) < 1e-4 and 0.9 <= ratio.mean() <= 1.1
        shifted = augment_batch(image, tf.constant([7, seed]), AugmentConfig(**only, intensity_mode="shift")).numpy()
        offset = shifted - image.numpy()
        assert np.ptp(offset) < 1e-3 and -25.5 <= offset.mean() <= 25.5
        # The same draw: factor 1 + u * 0.1 and offset u * 25.5.
        np.testing.assert_allclose((ratio.mean() - 1.0) * 255.0, offset.mean(), atol=1e-2)


def test_fill_is_black_or_the_edge():
    """A pure shift right by 10%: the uncovered left columns are 0 (constant) or the first column's
    value (nearest)."""
    image = ramp_batch() + 50.0
    cfg = dict(translation=0.1, rotation_degrees=0, horizontal_flip=False, zoom=0, intensity=0)
    for seed in range(20):  # find a draw that shifts right by at least one pixel
        constant = augment_batch(image, tf.constant([9, seed]), AugmentConfig(**cfg)).numpy()[0, :, :, 0]
        if constant[:, 0].max() < 1.0:
            break
    else:
        pytest.fail("no draw shifted the image right")
    nearest = augment_batch(image, tf.constant([9, seed]), AugmentConfig(**cfg, fill="nearest")).numpy()[0, :, :, 0]
    np.testing.assert_allclose(nearest[:, 0], 50.0, atol=1e-3)
    with pytest.raises(ValueError, match="augment.fill must be one of"):
        AugmentConfig(fill="reflect")


@pytest.fixture
def image_folder(tmp_path):
    paths, labels = [], []
    for i in range(10):
        label = int(i < 3)  # 3 of class 1, 7 of class 0
        Image.fromarray(np.full((8, 8), i * 20, np.uint8)).save(tmp_path / f"{i}.png")
        paths.append(f"{i}.png")
        labels.append(label)
    return tmp_path, paths, labels


def test_balanced_batches_hold_equal_classes(image_folder):
    root, paths, labels = image_folder
    data = balanced_dataset(root, paths, labels, batch_size=4, seed=1)
    for images, targets in data.take(6):
        assert images.shape == (4, 8, 8, 3)
        assert sorted(targets.numpy().tolist()) == [0, 0, 1, 1]


def test_datasets_are_deterministic(image_folder):
    root, paths, labels = image_folder
    def run():
        data = balanced_dataset(root, paths, labels, 4, seed=5, augment=AugmentConfig())
        return np.concatenate([x.numpy() for x, _ in data.take(5)])
    np.testing.assert_array_equal(run(), run())


def test_evaluation_dataset_keeps_order(image_folder):
    root, paths, labels = image_folder
    images = np.concatenate([x.numpy() for x, _ in evaluation_dataset(root, paths, labels, 3)])
    assert images[:, 0, 0, 0].tolist() == [i * 20 for i in range(10)]


def test_missing_image_named(image_folder):
    root, paths, labels = image_folder
    with pytest.raises(FileNotFoundError, match="nope.png"):
        evaluation_dataset(root, paths + ["nope.png"], labels + [0], 3)


def test_images_resize_on_load_for_smaller_models(image_folder):
    root, paths, labels = image_folder
    images = np.concatenate([x.numpy() for x, _ in evaluation_dataset(root, paths, labels, 3, image_size=4)])
    assert images.shape == (10, 4, 4, 3)
    assert images[:, 0, 0, 0].tolist() == [i * 20 for i in range(10)]  # area averaging of flat images
    balanced = next(iter(balanced_dataset(root, paths, labels, 4, seed=1, image_size=4)))[0]
    assert balanced.shape == (4, 4, 4, 3)

"""The augmentation measured (issue 20): a single bright pixel moved by fixed draws, its new place
computed by hand; and the paper's magnitudes held against params.yaml.

The paper (Aboutalebi et al. 2022, as quoted in ../shared/REFERENCE.md): translation +-10% in x and
y, rotation +-10 degrees, horizontal flip, zoom +-15%, intensity +-10%.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import yaml

from stages.common.params import load_params
from stages.training.augment import AugmentConfig, affine_transforms, augment_batch

ROOT = Path(__file__).resolve().parents[1]
PAPER = {"translation": 0.10, "rotation_degrees": 10.0, "horizontal_flip": True, "zoom": 0.15, "intensity": 0.10}
NONE = dict(translation=0.0, rotation_degrees=0.0, horizontal_flip=False, zoom=0.0, intensity=0.0)
SIDE = 41  # odd: the centre (20, 20) is a pixel
CENTRE = (SIDE - 1) / 2


def test_params_yaml_augments_as_the_paper_says(tmp_path):
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    for preset in raw["presets"]:  # no preset may change them
        path = tmp_path / f"{preset}.yaml"
        path.write_text(yaml.safe_dump({**raw, "preset": preset}))
        augment = load_params(path)["finetune"]["augment"]
        assert {k: augment[k] for k in PAPER} == PAPER, preset
    assert {k: getattr(AugmentConfig(), k) for k in PAPER} == PAPER  # the defaults too


def test_config_reads_its_keys_and_checks_the_modes():
    config = AugmentConfig.from_params({"zoom": 0.2, "translation": 0.05, "not_a_key": 1})
    assert (config.zoom, config.translation, config.rotation_degrees) == (0.2, 0.05, 10.0)
    with pytest.raises(ValueError, match=r"augment.intensity_mode must be one of \['brightness', 'shift'\], "
                                         r"got 'gamma'"):
        AugmentConfig(intensity_mode="gamma")


def one_pixel(row: int, column: int, value: float = 200.0) -> tf.Tensor:
    image = np.zeros((1, SIDE, SIDE, 1), np.float32)
    image[0, row, column, 0] = value
    return tf.constant(image)


def with_draws(monkeypatch, draws) -> None:
    """Replace the stateless draws by fixed ones: (rotation, zoom, shift x, shift y, flip, intensity)."""
    fixed = tf.constant([draws], tf.float32)
    monkeypatch.setattr(tf.random, "stateless_uniform", lambda shape, seed, minval, maxval: fixed)


def centroid(batch: tf.Tensor) -> tuple[float, float, float]:
    """(row, column, total intensity) of the output image."""
    image = batch.numpy()[0, :, :, 0].astype(np.float64)
    rows, columns = np.indices(image.shape)
    total = image.sum()
    return (rows * image).sum() / total, (columns * image).sum() / total, total


def expected_place(row, column, rotation=0.0, zoom=0.0, shift_x=0.0, shift_y=0.0, flip=False):
    """By hand, in pixel coordinates (x = column, y = row, y down), about the centre: scale by
    1 + zoom and turn by the angle (x' = x cos - y sin, y' = x sin + y cos), shift, then mirror x
    when flipped (augment.py's transform maps output to input, mirroring first; the forward map
    mirrors last). Every draw is symmetric, so the order changes no distribution, only which
    image a given draw makes."""
    x, y = column - CENTRE, row - CENTRE
    angle = math.radians(rotation)
    scale = 1 + zoom
    x, y = scale * (x * math.cos(angle) - y * math.sin(angle)) + shift_x, \
        scale * (x * math.sin(angle) + y * math.cos(angle)) + shift_y
    if flip:
        x = -x
    return y + CENTRE, x + CENTRE


@pytest.mark.parametrize("draws, place", [
    # translation: a draw of 1 shifts by 10% of the side (4.1 px), -0.5 by half of that.
    ((0, 0, 1.0, 0, 0.5, 0), dict(shift_x=4.1)),
    ((0, 0, 0, -0.5, 0.5, 0), dict(shift_y=-2.05)),
    # rotation: a draw of 1 turns by 10 degrees (not 10 radians), -1 by -10 degrees.
    ((1.0, 0, 0, 0, 0.5, 0), dict(rotation=10.0)),
    ((-1.0, 0, 0, 0, 0.5, 0), dict(rotation=-10.0)),
    # zoom: a draw of 1 scales by 1.15 about the centre, -1 by 0.85.
    ((0, 1.0, 0, 0, 0.5, 0), dict(zoom=0.15)),
    ((0, -1.0, 0, 0, 0.5, 0), dict(zoom=-0.15)),
    # a negative flip draw mirrors left-right; all of them at once.
    ((0, 0, 0, 0, -0.5, 0), dict(flip=True)),
    ((0.5, -0.4, 0.3, 0.6, -0.1, 0), dict(rotation=5.0, zoom=-0.06, shift_x=1.23, shift_y=2.46, flip=True)),
])
def test_a_bright_pixel_lands_where_the_hand_calculation_says(monkeypatch, draws, place):
    with_draws(monkeypatch, draws)
    row, column = 14, 31  # 11 px right of and 6 px above the centre
    out = augment_batch(one_pixel(row, column), tf.constant([0, 0]), AugmentConfig())
    got_row, got_column, total = centroid(out)
    want_row, want_column = expected_place(row, column, **place)
    assert (got_row, got_column) == (pytest.approx(want_row, abs=0.15), pytest.approx(want_column, abs=0.15))
    assert total > 0.5 * 200  # the pixel was moved, not lost


def test_brightness_scales_by_one_plus_a_tenth_of_the_draw(monkeypatch):
    with_draws(monkeypatch, (0, 0, 0, 0, 0.5, 1.0))
    out = augment_batch(one_pixel(20, 20), tf.constant([0, 0]), AugmentConfig())
    assert out.numpy()[0, 20, 20, 0] == pytest.approx(220.0, abs=1e-3)
    with_draws(monkeypatch, (0, 0, 0, 0, 0.5, -0.5))
    out = augment_batch(one_pixel(20, 20), tf.constant([0, 0]), AugmentConfig())
    assert out.numpy()[0, 20, 20, 0] == pytest.approx(190.0, abs=1e-3)
    # shift: + draw x 10% of full scale (255); the zero background rises too.
    shifted = augment_batch(one_pixel(20, 20), tf.constant([0, 0]), AugmentConfig(intensity_mode="shift")).numpy()
    assert shifted[0, 20, 20, 0] == pytest.approx(200 - 12.75, abs=1e-3) and shifted[0, 0, 0, 0] == 0.0
    with_draws(monkeypatch, (0, 0, 0, 0, 0.5, 1.0))
    assert augment_batch(one_pixel(20, 20, 250.0), tf.constant([0, 0]), AugmentConfig()).numpy().max() == 255.0


def test_switched_off_parts_do_nothing_whatever_the_draws(monkeypatch):
    with_draws(monkeypatch, (0.9, 0.9, 0.9, 0.9, -0.9, 0.9))
    image = one_pixel(14, 31)
    out = augment_batch(image, tf.constant([0, 0]), AugmentConfig(**NONE))
    np.testing.assert_allclose(out.numpy(), image.numpy(), atol=1e-4)


def test_the_uncovered_border_is_black_or_the_edge(monkeypatch):
    with_draws(monkeypatch, (0, 0, 1.0, 0, 0.5, 0))  # shift right by 4.1 px
    image = tf.fill((1, SIDE, SIDE, 1), 100.0)
    black = augment_batch(image, tf.constant([0, 0]), AugmentConfig()).numpy()[0, :, :, 0]
    assert black[:, :4].max() == 0.0 and black[:, 5:].min() == pytest.approx(100.0)
    edge = augment_batch(image, tf.constant([0, 0]), AugmentConfig(fill="nearest")).numpy()[0, :, :, 0]
    np.testing.assert_allclose(edge, 100.0, atol=1e-4)


def test_transforms_by_hand():
    """The projective transform maps output to input: for a pure shift of +4.1 px in x it is
    [1, 0, -4.1, 0, 1, 0, 0, 0]; a flip is x_in = (side - 1) - x_out."""
    cfg = AugmentConfig()
    shift = affine_transforms(tf.constant([[0, 0, 1.0, 0, 0.5]]), SIDE, SIDE, cfg).numpy()[0]
    np.testing.assert_allclose(shift, [1, 0, -4.1, 0, 1, 0, 0, 0], atol=1e-5)
    flip = affine_transforms(tf.constant([[0, 0, 0, 0, -0.5]]), SIDE, SIDE, cfg).numpy()[0]
    np.testing.assert_allclose(flip, [-1, 0, SIDE - 1, 0, 1, 0, 0, 0], atol=1e-5)
    # A non-square image: x shifts by 10% of the width, y by 10% of the height.
    both = affine_transforms(tf.constant([[0, 0, 1.0, 1.0, 0.5]]), 20, 50, cfg).numpy()[0]
    np.testing.assert_allclose(both, [1, 0, -5.0, 0, 1, -2.0, 0, 0], atol=1e-5)
    zoom = affine_transforms(tf.constant([[0, 1.0, 0, 0, 0.5]]), SIDE, SIDE, cfg).numpy()[0]
    np.testing.assert_allclose(zoom, [1 / 1.15, 0, CENTRE - CENTRE / 1.15, 0, 1 / 1.15, CENTRE - CENTRE / 1.15, 0, 0],
                               atol=1e-5)
    fixed = AugmentConfig(horizontal_flip=False)
    np.testing.assert_allclose(affine_transforms(tf.constant([[0, 0, 0, 0, -0.5]]), SIDE, SIDE, fixed).numpy()[0],
                               [1, 0, 0, 0, 1, 0, 0, 0], atol=1e-6)


def inverse_by_hand(draws, height, width, cfg=AugmentConfig()):
    """The output -> input map as a 3 x 3 matrix, composed with numpy from the forward map of
    :func:`expected_place` (scale, turn, shift, then mirror about the centre)."""
    rotation, zoom, shift_x, shift_y, flip_draw = draws[:5]
    angle = math.radians(rotation * cfg.rotation_degrees)
    scale = 1 + zoom * cfg.zoom
    cx, cy = (width - 1) / 2, (height - 1) / 2
    to_centre = np.array([[1, 0, -cx], [0, 1, -cy], [0, 0, 1]])
    turn = np.array([[scale * math.cos(angle), -scale * math.sin(angle), 0],
                     [scale * math.sin(angle), scale * math.cos(angle), 0], [0, 0, 1]])
    shift = np.array([[1, 0, shift_x * cfg.translation * width], [0, 1, shift_y * cfg.translation * height], [0, 0, 1]])
    mirror = np.diag([-1.0 if cfg.horizontal_flip and flip_draw < 0 else 1.0, 1, 1])
    forward = np.linalg.inv(to_centre) @ mirror @ shift @ turn @ to_centre
    inverse = np.linalg.inv(forward)
    return inverse[0].tolist() + inverse[1].tolist()[:3]


@pytest.mark.parametrize("draws", [(1.0, -0.4, 0.3, 0.6, -0.1), (-0.7, 1.0, -1.0, 0.2, 0.9), (0.5, -1.0, 0.0, -0.3, -1.0)])
@pytest.mark.parametrize("height, width", [(41, 41), (30, 52)])
def test_transform_matrices_equal_the_hand_composition(draws, height, width):
    got = affine_transforms(tf.constant([draws], tf.float32), height, width, AugmentConfig()).numpy()[0]
    np.testing.assert_allclose(got[:6], inverse_by_hand(draws, height, width), atol=2e-5)
    np.testing.assert_array_equal(got[6:], [0, 0])


def test_a_flip_draw_of_exactly_zero_does_not_flip():
    """Flip when the draw is below 0 (half of [-1, 1))."""
    got = affine_transforms(tf.constant([[0, 0, 0, 0, 0.0]]), SIDE, SIDE, AugmentConfig()).numpy()[0]
    np.testing.assert_allclose(got, [1, 0, 0, 0, 1, 0, 0, 0], atol=1e-6)


def test_a_wide_image_shifts_by_its_own_width_and_height(monkeypatch):
    with_draws(monkeypatch, (0, 0, 1.0, 1.0, 0.5, 0))  # +10% of the width in x, +10% of the height in y
    image = np.zeros((1, 21, 61, 1), np.float32)
    image[0, 10, 30, 0] = 200.0
    out = augment_batch(tf.constant(image), tf.constant([0, 0]), AugmentConfig()).numpy()[0, :, :, 0]
    rows, columns = np.indices(out.shape)
    place = ((rows * out).sum() / out.sum(), (columns * out).sum() / out.sum())
    assert place == (pytest.approx(10 + 2.1, abs=0.15), pytest.approx(30 + 6.1, abs=0.15))


def test_each_image_of_a_batch_takes_its_own_row_of_the_seeded_draws():
    """The documented protocol: one stateless draw of [batch, 6] values in [-1, 1) per batch seed;
    row i moves image i (TensorFlow's generator is the oracle for the draws)."""
    seed = tf.constant([5, 8])
    draws = tf.random.stateless_uniform([3, 6], seed=seed, minval=-1.0, maxval=1.0).numpy()
    batch = tf.concat([one_pixel(14, 31)] * 3, axis=0)
    out = augment_batch(batch, seed, AugmentConfig())
    for i in range(3):
        rotation, zoom, shift_x, shift_y, flip_draw, intensity = draws[i]
        got_row, got_column, _ = centroid(out[i:i + 1])
        want = expected_place(14, 31, rotation=10 * rotation, zoom=0.15 * zoom, shift_x=4.1 * shift_x,
                              shift_y=4.1 * shift_y, flip=flip_draw < 0)
        assert (got_row, got_column) == (pytest.approx(want[0], abs=0.2), pytest.approx(want[1], abs=0.2))
        # Brightness: the image's total scales by 1 + 0.1 x its sixth draw (bilinear keeps the sum
        # of a pixel that stays inside, up to the zoom's area change: compare with no intensity draw).
        plain = augment_batch(batch, seed, AugmentConfig(intensity=0.0)).numpy()[i].sum()
        assert out.numpy()[i].sum() == pytest.approx(plain * (1 + 0.1 * intensity), rel=1e-4)

"""Real public chest X-rays (Cohen covid-chestxray-dataset severity subset) decode and preprocess.

The 93 images under ../shared/data/cohen-severity/images/ are JPEGs and PNGs as published: grey,
RGB (screenshots of figures, some with coloured marks) and RGBA. Each must decode with read_any and
preprocess into a non-constant uint8 image. The synthetic tests below cover the raster modes that
collection and others use (16-bit, palette, grey+alpha, RGBA with a varying alpha) without the data.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stages.dicomio.read import RASTER_SUFFIXES, read_any, read_raster
from stages.imaging.preprocess import preprocess

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
COHEN = SHARED_DATA / "cohen-severity"
IMAGES = COHEN / "images"
SIZE = 64
CROP_TOP = 0.08
N_IMAGES = 93  # ../shared/data/README.md: 93 of the 94 scored images
MISSING = {"covid-19-pneumonia-14-PA.png"}  # the README's one scored image without a file


@pytest.fixture(scope="module")
def cohen_images() -> list[Path]:
    if not IMAGES.is_dir():
        pytest.skip(f"../shared/data/cohen-severity is absent: no real images at {IMAGES}")
    return sorted(path for path in IMAGES.iterdir() if path.is_file())


def test_the_folder_holds_the_93_scored_images(cohen_images):
    names = {path.name for path in cohen_images}
    assert len(cohen_images) == N_IMAGES
    assert all(path.suffix.lower() in RASTER_SUFFIXES for path in cohen_images)
    with (COHEN / "covid-severity-scores.csv").open(newline="") as handle:
        rows = [line for line in handle if not line.startswith("##")]
    scored = {row["filename"] for row in csv.DictReader(rows)}
    assert len(scored) == N_IMAGES + len(MISSING)
    assert names == scored - MISSING


def test_every_image_decodes_and_preprocesses(cohen_images):
    failures, modes = [], set()
    for path in cohen_images:
        try:
            with Image.open(path) as image:
                modes.add(image.mode)
                width, height = image.size
            display = read_any(path)
            assert display.dtype == np.float32 and display.shape == (height, width), display.shape
            assert display.min() == 0.0 and display.max() == 1.0
            model_input = preprocess(display, SIZE, CROP_TOP)
            assert model_input.dtype == np.uint8 and model_input.shape == (SIZE, SIZE)
            assert model_input.min() < model_input.max(), "constant after preprocessing"
        except Exception as err:  # collect them all, so one run names every failing file
            failures.append(f"{path.name}: {type(err).__name__}: {err}")
    assert not failures, "\n".join(failures)
    assert {"L", "RGB", "RGBA"} <= modes  # the collection exercises grey, colour and alpha files


# --- raster modes, on synthetic files -------------------------------------------------------------

def grey_ramp() -> np.ndarray:
    ramp = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (40, 1))  # 40 x 64, values 0..252
    ramp[5:15, 5:15] = 255
    return ramp


def expected(grey: np.ndarray) -> np.ndarray:
    grey = grey.astype(np.float64)
    return ((grey - grey.min()) / (grey.max() - grey.min())).astype(np.float32)


def rgba_with_varying_alpha(grey: np.ndarray) -> Image.Image:
    alpha = np.linspace(0, 255, grey.size).reshape(grey.shape).astype(np.uint8)
    return Image.fromarray(np.dstack([grey, grey, grey, alpha]), "RGBA")


def palette(grey: np.ndarray, transparent: bool) -> Image.Image:
    image = Image.fromarray(grey, "L").convert("P")  # palette index = grey level, palette entry = grey
    if transparent:
        image.info["transparency"] = 0
    return image


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "LA", "P", "P+tRNS", "JPEG-L", "JPEG-RGB"])
def test_raster_modes_become_the_same_grey_image(tmp_path, mode):
    grey = grey_ramp()
    rgb = np.dstack([grey, grey, grey])
    if mode == "L":
        image, suffix = Image.fromarray(grey, "L"), ".png"
    elif mode == "RGB":
        image, suffix = Image.fromarray(rgb, "RGB"), ".png"
    elif mode == "RGBA":
        image, suffix = rgba_with_varying_alpha(grey), ".png"
    elif mode == "LA":
        image, suffix = Image.fromarray(np.dstack([grey, 255 - grey]), "LA"), ".png"
    elif mode.startswith("P"):
        image, suffix = palette(grey, transparent=mode == "P+tRNS"), ".png"
    else:
        image, suffix = Image.fromarray(grey if mode == "JPEG-L" else rgb), ".jpg"
    path = tmp_path / f"x{suffix}"
    if suffix == ".jpg":
        image.save(path, quality=100, subsampling=0)
    else:
        image.save(path)
    with Image.open(path) as reopened:  # the file really is in the mode under test
        assert reopened.mode == {"P+tRNS": "P", "JPEG-L": "L", "JPEG-RGB": "RGB"}.get(mode, mode)
    display = read_any(path)
    assert display.shape == grey.shape and display.dtype == np.float32
    tolerance = 3 / 255 if suffix == ".jpg" else 0.0
    np.testing.assert_allclose(display, expected(grey), rtol=0, atol=tolerance)


def test_16_bit_png_keeps_its_depth(tmp_path):
    values = np.tile(np.linspace(0, 65535, 64).round().astype(np.uint16), (40, 1))
    values[0, :3] = [1000, 1001, 1002]  # neighbours that 8 bits would merge
    Image.fromarray(values).save(tmp_path / "deep.png")
    with Image.open(tmp_path / "deep.png") as reopened:
        assert reopened.mode.startswith("I")
    display = read_raster(tmp_path / "deep.png")
    np.testing.assert_allclose(display, values / 65535.0, rtol=0, atol=1e-6)
    assert len(set(display[0, :3].tolist())) == 3


def test_colour_marks_become_luma(tmp_path):
    rgb = np.dstack([grey_ramp()] * 3)
    rgb[20:30, 40:50] = [255, 0, 0]  # a red annotation, as in published figures
    Image.fromarray(rgb, "RGB").save(tmp_path / "marked.png")
    display = read_raster(tmp_path / "marked.png")
    luma = round(255 * 299 / 1000)  # ITU-R 601-2: L = 0.299 R + 0.587 G + 0.114 B
    assert display[25, 45] == pytest.approx(luma / 255, abs=1 / 255)

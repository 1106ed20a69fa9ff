"""Running an exported ``.tflite`` file with the ``ai-edge-litert`` interpreter, without TensorFlow.

Shared by ``export`` (parity against the Keras model) and ``predict --backend litert``.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np


def interpreter(path: Path, default_delegates: bool = True, threads: int = 1, reference: bool = False):
    """The interpreter of a .tflite file, tensors allocated.

    Without the default delegates the operators are listed as the file holds them (XNNPACK would
    otherwise claim them into one DELEGATE node). ``reference``: LiteRT's reference kernels (plain
    loops, no delegate, no kernel chosen by the host's instruction set), slow but the same bits on
    every x86-64 host: the 87 test images of CXR-S gave the same probabilities on this AVX-512 host
    and under ``qemu-x86_64 -cpu Haswell``.
    """
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    if reference:
        resolver = OpResolverType.BUILTIN_REF
    elif default_delegates:
        resolver = OpResolverType.AUTO
    else:
        resolver = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    loaded = Interpreter(model_path=str(path), num_threads=threads, experimental_op_resolver_type=resolver)
    loaded.allocate_tensors()
    return loaded


def _maybe_progress(images: np.ndarray, description: str | None):
    if description is None:
        return images
    from stages.common.progress import progress

    return progress(images, desc=description, unit="img", leave=False)


class Runner:
    """(N, size, size, 3) float32 images in [0, 255] -> (N, 2) probabilities, one image per invocation
    (the exported file's input is one image)."""

    def __init__(self, path: Path, threads: int = 1, reference: bool = False):
        self.interpreter = interpreter(path, threads=threads, reference=reference)
        (self.source,), (self.target,) = self.interpreter.get_input_details(), self.interpreter.get_output_details()

    def __call__(self, images: np.ndarray, description: str | None = None) -> np.ndarray:
        """``description``: show a progress bar with it (the reference kernels take seconds an image)."""
        rows = []
        for image in _maybe_progress(images, description):
            self.interpreter.set_tensor(self.source["index"], image[None].astype(np.float32))
            self.interpreter.invoke()
            rows.append(self.interpreter.get_tensor(self.target["index"])[0].astype(np.float64))
        return np.asarray(rows)


class GradCamRunner:
    """The export's ``gradcam.tflite``: (N, size, size, 3) images -> ((N, 2) probabilities, (N, h, w) maps),
    one image per invocation; its two outputs are told apart by shape."""

    def __init__(self, path: Path, threads: int = 1):
        self.interpreter = interpreter(path, threads=threads)
        (self.source,) = self.interpreter.get_input_details()
        outputs = self.interpreter.get_output_details()
        self.probabilities = next(o["index"] for o in outputs if len(o["shape"]) == 2)
        self.cam = next(o["index"] for o in outputs if len(o["shape"]) == 3)

    def __call__(self, images: np.ndarray, description: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        probabilities, cams = [], []
        for image in _maybe_progress(images, description):
            self.interpreter.set_tensor(self.source["index"], image[None].astype(np.float32))
            self.interpreter.invoke()
            probabilities.append(self.interpreter.get_tensor(self.probabilities)[0].astype(np.float64))
            cams.append(self.interpreter.get_tensor(self.cam)[0].astype(np.float32))
        return np.asarray(probabilities), np.asarray(cams)


def operator_counts(path: Path) -> dict[str, int]:
    """How many of each operator the file holds (delegates off, so folded batch norms show as absent MULs)."""
    counts = Counter(op["op_name"] for op in interpreter(path, default_delegates=False)._get_ops_details())
    return dict(sorted(counts.items()))

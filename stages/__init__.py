"""COVID-Net CXR-S pipeline: one module per DVC stage, shared code in sub-packages."""

import sys as _sys

from stages.common import cpu as _cpu

# Before any stage module imports numpy or TensorFlow: the same kernels on every x86-64 machine.
if not _cpu.pin() and _cpu.opted_out():
    print(_cpu.UNPINNED_WARNING, file=_sys.stderr)

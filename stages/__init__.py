"""COVID-Net CXR-S pipeline: one module per DVC stage, shared code in sub-packages."""

from stages.common import cpu as _cpu

# Before any stage module imports numpy or TensorFlow: the same kernels on every x86-64 machine.
_cpu.pin()

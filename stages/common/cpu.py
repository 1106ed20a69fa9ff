"""One numerical platform on every x86-64 machine: pin the CPU code paths before numpy loads.

numpy, its OpenBLAS and oneDNN (inside TensorFlow, which also runs its Eigen matrix products on
oneDNN's sgemm) pick their kernels at run time by the host's instruction set. Kernels for other
vector widths sum in another order, so an AVX-512 machine rendered other phantoms (671 raw files
differed) and trained other weights than an AVX2 one. Each library has a switch that caps that
choice; :func:`pin` sets them, for every process of the pipeline, before the libraries read them:

================  ===========================  ==============================  =====================
library           switch                       pinned to                       needs
================  ===========================  ==============================  =====================
numpy 2.x         ``NPY_ENABLE_CPU_FEATURES``  ``X86_V2``: its baseline only,  SSE4.2, POPCNT
                                               no run-time dispatch
OpenBLAS (numpy)  ``OPENBLAS_CORETYPE``,       ``Nehalem`` kernels, 1 thread   SSE4.2
                  ``OPENBLAS_NUM_THREADS``
oneDNN (TF)       ``ONEDNN_MAX_CPU_ISA``,      ``AVX2``; TensorFlow's oneDNN   AVX2, FMA
                  ``TF_ENABLE_ONEDNN_OPTS``    graph rewrites on (its default)
================  ===========================  ==============================  =====================

So every x86-64 CPU with AVX2 and FMA (Intel since Haswell, 2013; AMD since Zen, 2017) computes
what this one does. The pins override what the environment says (a pin the user could loosen
would not be a pin); ``COVIDNET_CPU_PIN=off`` turns them off for speed experiments, and every stage
then says so on stderr. Other architectures run unpinned: :func:`platform_report` says why, and
the clean-reproduction check compares within a measured tolerance there.

The switches are read when each library loads (numpy at import, oneDNN at its first primitive), so
``stages/__init__.py`` calls :func:`pin` before any stage module imports numpy.
"""

from __future__ import annotations

import os
import platform
import sys

OPT_OUT = "COVIDNET_CPU_PIN"
# What every pinned process runs with on x86-64 (see the table above).
PINNED_ENVIRONMENT = {
    "NPY_ENABLE_CPU_FEATURES": "X86_V2",
    "OPENBLAS_CORETYPE": "Nehalem",
    "OPENBLAS_NUM_THREADS": "1",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "TF_ENABLE_ONEDNN_OPTS": "1",
}
# numpy refuses NPY_ENABLE_CPU_FEATURES beside NPY_DISABLE_CPU_FEATURES; the baseline-only pin
# already disables everything the second could.
CONFLICTING = ("NPY_DISABLE_CPU_FEATURES",)
# oneDNN's AVX2 kernels need both; the exact-reproduction promise is for hosts that have them.
REQUIRED_FLAGS = ("avx2", "fma")


UNPINNED_WARNING = (f"stages: {OPT_OUT}=off: numpy, OpenBLAS and oneDNN use this CPU's own kernels; "
                    "outputs may differ from other machines' and from the committed metrics")


def opted_out(environ: dict | None = None) -> bool:
    return (os.environ if environ is None else environ).get(OPT_OUT, "").lower() == "off"


def applies(environ: dict | None = None) -> bool:
    """The pins apply on x86-64 unless the user opted out."""
    return platform.machine().lower() in ("x86_64", "amd64") and not opted_out(environ)


def pin(environ: dict | None = None) -> bool:
    """Set the pins in ``environ`` (default: this process's environment); True if they apply."""
    environ = os.environ if environ is None else environ
    if not applies(environ):
        return False
    for name in CONFLICTING:
        environ.pop(name, None)
    environ.update(PINNED_ENVIRONMENT)
    return True


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def numpy_dispatch() -> list[str]:
    """numpy's run-time dispatch targets that are active in this process (empty when pinned)."""
    from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__

    return [name for name in __cpu_dispatch__ if __cpu_features__.get(name)]


def platform_report() -> dict[str, object]:
    """Whether this process computes on the pinned reference platform, and if not, why not."""
    reasons = []
    if platform.machine().lower() not in ("x86_64", "amd64"):
        reasons.append(f"{platform.machine()} is not x86-64")
    elif opted_out():
        reasons.append(f"{OPT_OUT}=off")
    else:
        missing = [flag for flag in REQUIRED_FLAGS if flag not in _cpu_flags()]
        if missing:
            reasons.append(f"the CPU lacks {', '.join(missing)}")
        changed = {k: os.environ.get(k) for k, v in PINNED_ENVIRONMENT.items() if os.environ.get(k) != v}
        if changed:
            reasons.append(f"environment not pinned: {changed}")
        if "numpy" in sys.modules and numpy_dispatch():
            reasons.append(f"numpy loaded before the pin, dispatching to {numpy_dispatch()}")
    return {"pinned": not reasons, "reasons": reasons}

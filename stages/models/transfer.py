"""Move backbone weights between models by layer name, never by position."""

from __future__ import annotations

import keras


class WeightTransferError(ValueError):
    """The source model lacks a layer the target needs, or a layer's weights do not fit."""


def transfer_by_name(source: keras.Model, target: keras.Model, head_prefixes: tuple[str, ...]) -> list[str]:
    """Copy every weighted target layer outside the head from the same-named source layer.

    Fails loudly when a backbone layer is missing in the source or its weight shapes differ, so a
    renamed layer can never silently start from random weights. Returns the copied layer names.
    """
    source_layers = {layer.name: layer for layer in source.layers}
    copied, missing, mismatched = [], [], []
    for layer in target.layers:
        if not layer.weights or layer.name.startswith(head_prefixes):
            continue
        donor = source_layers.get(layer.name)
        if donor is None:
            missing.append(layer.name)
            continue
        donor_shapes = [tuple(w.shape) for w in donor.weights]
        target_shapes = [tuple(w.shape) for w in layer.weights]
        if donor_shapes != target_shapes:
            mismatched.append(f"{layer.name}: {donor_shapes} -> {target_shapes}")
            continue
        layer.set_weights(donor.get_weights())
        copied.append(layer.name)
    if missing or mismatched:
        raise WeightTransferError(
            f"cannot transfer weights from {source.name!r} to {target.name!r}: "
            f"{len(missing)} layer(s) missing in the source {missing[:5]}, "
            f"{len(mismatched)} with other shapes {mismatched[:5]}")
    if not copied:
        raise WeightTransferError(f"no backbone layer of {target.name!r} found in {source.name!r}")
    return copied

"""Class similarity from the teacher's final layer (section 3.2, eq. 2)."""
import keras
import numpy as np


def final_layer_kernel(model):
    """The (D, K) kernel of the teacher's final Dense layer, found from the model.

    Raises ValueError if the model's last weighted layer is not a Dense layer whose output
    width equals the model's output width.
    """
    num_outputs = model.output_shape[-1]
    for layer in reversed(model.layers):
        if not layer.weights:
            continue
        if isinstance(layer, keras.layers.Dense) and layer.units == num_outputs:
            return np.asarray(layer.kernel.numpy(), np.float64)
        break
    raise ValueError(
        f"model {model.name!r} has no final Dense layer with {num_outputs} units, so its class "
        "templates (eq. 2) cannot be found; pass the final layer's (features, classes) "
        "kernel explicitly")


def class_similarity(kernel):
    """C(i, j) = cosine of class columns i and j of a (D, K) kernel (eq. 2), as (K, K)."""
    w = np.asarray(kernel, np.float64)
    if w.ndim != 2 or w.shape[1] < 2:
        raise ValueError(f"kernel must be (features, classes) with >= 2 classes, got {w.shape}")
    norms = np.linalg.norm(w, axis=0)
    if np.any(norms == 0):
        raise ValueError(f"kernel columns {np.flatnonzero(norms == 0).tolist()} are all zero: "
                         "cosine similarity is undefined")
    w = w / norms
    return w.T @ w


def concentration(similarity):
    """Row-wise min-max normalisation of C: row k is class k's concentration alpha^k."""
    c = np.asarray(similarity, np.float64)
    lo = c.min(axis=1, keepdims=True)
    hi = c.max(axis=1, keepdims=True)
    return (c - lo) / np.where(hi > lo, hi - lo, 1.0)


def from_model(model):
    """(similarity matrix, concentration matrix) of a teacher."""
    sim = class_similarity(final_layer_kernel(model))
    return sim, concentration(sim)

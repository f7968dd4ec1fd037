"""Whether a Keras model can serve as the teacher of a run, checked before any work.

ZSKD needs a teacher that takes the run's images, outputs one logit per class (the
temperature is applied to logits, and crafting's loss expects them), and ends in a Dense
layer whose kernel gives the class similarity (``zskd_tf.similarity``, eq. 2). A model
that is not one fails here with a one-line ``TeacherError`` instead of after crafting.
"""
import numpy as np

from zskd_tf import similarity

PROBABILITY_ACTIVATIONS = ("softmax", "sigmoid", "log_softmax")
_PROBE_IMAGES = 8
_SUM_TOLERANCE = 1e-4


class TeacherError(ValueError):
    """The model cannot be this run's teacher; the message says why, in one line."""


def check(teacher, image_shape, num_classes):
    """Raises TeacherError unless ``teacher`` takes ``image_shape`` images (no batch
    axis) and outputs (batch, ``num_classes``) logits from a final Dense layer with one
    unit per class. Runs the teacher once on a few random images."""
    image_shape = tuple(int(d) for d in image_shape)
    inputs = teacher.input_shape
    if not isinstance(inputs, tuple) or (inputs and isinstance(inputs[0], (tuple, list))):
        raise TeacherError(f"the teacher must take one image input, not {len(inputs)}")
    if tuple(inputs[1:]) != image_shape:
        raise TeacherError(f"the teacher takes images of shape {tuple(inputs[1:])}; this "
                           f"run's are {image_shape} (height, width, channels)")
    outputs = teacher.output_shape
    if not isinstance(outputs, tuple) or len(outputs) != 2 or outputs[1] != num_classes:
        raise TeacherError(f"the teacher outputs {_shape(outputs)}; it must output "
                           f"(batch, {num_classes}): one logit for each of {num_classes} classes")
    try:
        similarity.final_layer_kernel(teacher)
    except ValueError:
        raise TeacherError(f"the teacher has no final Dense layer with one unit for each of "
                           f"its {num_classes} classes (its kernel gives the class "
                           "similarity, eq. 2)") from None
    activation = _final_activation(teacher)
    if activation in PROBABILITY_ACTIVATIONS:
        raise TeacherError(f"the teacher's last layer applies {activation}: it must output "
                           "logits, not probabilities (save it without that activation)")
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (_PROBE_IMAGES,) + image_shape).astype(np.float32)
    y = np.asarray(teacher(x, training=False), np.float64)
    if not np.all(np.isfinite(y)):
        raise TeacherError("the teacher's outputs on random images are not all finite")
    if np.all((y >= 0) & (y <= 1)) and np.allclose(y.sum(axis=1), 1, rtol=0,
                                                     atol=_SUM_TOLERANCE):
        raise TeacherError("the teacher's outputs on random images are probabilities (in "
                           "[0, 1], each row summing to 1): it must output logits")


def _shape(shape):
    return "(batch, " + ", ".join(str(d) for d in shape[1:]) + ")" \
        if isinstance(shape, tuple) and shape and shape[0] is None else str(shape)


def _final_activation(model):
    """The name of the activation the model's last layer applies, if any."""
    layer = model.layers[-1]
    name = type(layer).__name__.lower()
    if name in ("softmax", "sigmoid"):  # keras.layers.Softmax
        return name
    activation = getattr(layer, "activation", None)
    if activation is None:
        return None
    name = getattr(activation, "__name__", None) or str(activation)
    return name.lower()

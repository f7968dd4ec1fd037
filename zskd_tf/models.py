"""The paper's teacher and student architectures (appendix Tables 4 and 5).

All models take 32x32xC images in [0, 1] and output logits; the caller applies the
temperature. Layer names follow the tables' numbering (``conv1``, ``lrn2``, ``pool3``...)
so a model can be checked against the table layer by layer.

Every builder takes ``dtype``: a Keras dtype policy for its layers (None: the global
policy, float32 here), e.g. ``"mixed_bfloat16"``: float32 variables, bfloat16 compute.
The logits layer of a model built with a policy always computes in float32, so the
logits and every loss on them are float32 (the student's ``student_precision``).
"""
import keras
import tensorflow as tf

PACKAGE = "zskd_tf"


@keras.saving.register_keras_serializable(package=PACKAGE)
class LocalResponseNormalization(keras.layers.Layer):
    """``tf.nn.local_response_normalization`` as a serialisable Keras layer.

    out = x / (bias + alpha * sum_{|d'-d| <= depth_radius} x[..., d']^2) ** beta, over channels
    (TensorFlow's definition: alpha is not divided by the window size).
    """

    def __init__(self, depth_radius=2, bias=1.0, alpha=1e-4, beta=0.75, **kwargs):
        super().__init__(**kwargs)
        self.depth_radius = int(depth_radius)
        self.bias = float(bias)
        self.alpha = float(alpha)
        self.beta = float(beta)

    def call(self, inputs):
        # TensorFlow's CPU LRN kernel has no bfloat16: a bf16 model normalises in float32.
        dtype = inputs.dtype
        if dtype == tf.bfloat16:
            inputs = tf.cast(inputs, tf.float32)
        out = tf.nn.local_response_normalization(
            inputs, depth_radius=self.depth_radius, bias=self.bias,
            alpha=self.alpha, beta=self.beta)
        return tf.cast(out, dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "depth_radius": self.depth_radius,
                "bias": self.bias, "alpha": self.alpha, "beta": self.beta}


def _decay(weight_decay):
    """Kernel regulariser adding weight_decay * sum(w^2) / 2 (TF1's ``l2_regularizer``)."""
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    return keras.regularizers.L2(weight_decay / 2) if weight_decay else None


def _logits_dtype(dtype):
    """The logits layer's policy: float32 whenever the model is given one."""
    return None if dtype is None else "float32"


def _lenet(name, filters, input_shape, num_classes, weight_decay, dtype=None):
    init = lambda: keras.initializers.TruncatedNormal(stddev=0.1)  # noqa: E731
    conv = lambda n, f: keras.layers.Conv2D(  # noqa: E731
        f, 5, padding="valid", activation="relu", kernel_initializer=init(),
        bias_initializer="zeros", kernel_regularizer=_decay(weight_decay), name=n,
        dtype=dtype)
    dense = lambda n, u, act=None, dtype=dtype: keras.layers.Dense(  # noqa: E731
        u, activation=act, kernel_initializer=init(), bias_initializer="zeros",
        kernel_regularizer=_decay(weight_decay), name=n, dtype=dtype)
    x = inputs = keras.Input(input_shape, name="image")
    x = conv("conv1", filters[0])(x)
    x = keras.layers.MaxPooling2D(2, padding="valid", name="pool2", dtype=dtype)(x)
    x = conv("conv3", filters[1])(x)
    x = keras.layers.MaxPooling2D(2, padding="valid", name="pool4", dtype=dtype)(x)
    x = keras.layers.Flatten(name="flatten", dtype=dtype)(x)
    x = dense("fc5", 120, "relu")(x)
    x = dense("fc6", 84, "relu")(x)
    logits = dense("fc7", num_classes, dtype=_logits_dtype(dtype))(x)
    return keras.Model(inputs, logits, name=name)


def lenet5(input_shape=(32, 32, 1), num_classes=10, weight_decay=0.0, dtype=None):
    """LeNet-5 teacher (Table 4): 61,706 parameters for 32x32x1 input and 10 classes.

    ``weight_decay`` > 0 adds weight_decay * sum(w^2) / 2 over every kernel to the
    training loss (not in the paper; the TF1 reproduction's teachers use 1e-4).
    ``dtype``: the layers' Keras dtype policy (the module's docstring).
    """
    return _lenet("lenet5", (6, 16), input_shape, num_classes, weight_decay, dtype)


def lenet5_half(input_shape=(32, 32, 1), num_classes=10, weight_decay=0.0, dtype=None):
    """LeNet-5-Half student (Table 4): half the conv filters; 35,820 parameters."""
    return _lenet("lenet5_half", (3, 8), input_shape, num_classes, weight_decay, dtype)


def _alexnet(name, width, input_shape, num_classes, dropout, weight_decay, dtype=None):
    """Table 5. ``width`` = (conv1..conv5 filters, fc16, fc19)."""
    init = lambda: keras.initializers.RandomNormal(stddev=0.01)  # noqa: E731

    def conv(n, f, k, bias):
        return keras.layers.Conv2D(
            f, k, padding="same", activation="relu", kernel_initializer=init(),
            bias_initializer=keras.initializers.Constant(bias),
            kernel_regularizer=_decay(weight_decay), name=n, dtype=dtype)

    def dense(n, u, act=None, dtype=dtype):
        return keras.layers.Dense(u, activation=act, kernel_initializer=init(),
                                  bias_initializer="zeros",
                                  kernel_regularizer=_decay(weight_decay), name=n,
                                  dtype=dtype)

    pool = lambda n: keras.layers.MaxPooling2D(  # noqa: E731
        3, 2, padding="valid", name=n, dtype=dtype)
    # BatchNormalization normalises in float32 whatever its policy (Keras upcasts)
    bn = lambda n: keras.layers.BatchNormalization(name=n, dtype=dtype)  # noqa: E731
    lrn = lambda n: LocalResponseNormalization(  # noqa: E731
        2, 1.0, 1e-4, 0.75, name=n, dtype=dtype)
    c1, c2, c3, c4, c5, f16, f19 = width
    x = inputs = keras.Input(input_shape, name="image")
    x = conv("conv1", c1, 5, 0.0)(x)
    x = lrn("lrn2")(x)
    x = pool("pool3")(x)
    x = bn("bn4")(x)
    x = conv("conv5", c2, 5, 1.0)(x)
    x = lrn("lrn6")(x)
    x = pool("pool7")(x)
    x = bn("bn8")(x)
    x = conv("conv9", c3, 3, 0.0)(x)
    x = bn("bn10")(x)
    x = conv("conv11", c4, 3, 1.0)(x)
    x = bn("bn12")(x)
    x = conv("conv13", c5, 3, 1.0)(x)
    x = pool("pool14")(x)
    x = bn("bn15")(x)
    x = keras.layers.Flatten(name="flatten", dtype=dtype)(x)
    x = dense("fc16", f16, "relu")(x)
    x = keras.layers.Dropout(dropout, name="dropout17", dtype=dtype)(x)
    x = bn("bn18")(x)
    x = dense("fc19", f19, "relu")(x)
    x = keras.layers.Dropout(dropout, name="dropout20", dtype=dtype)(x)
    x = bn("bn21")(x)
    logits = dense("fc22", num_classes, dtype=_logits_dtype(dtype))(x)
    return keras.Model(inputs, logits, name=name)


def alexnet(input_shape=(32, 32, 3), num_classes=10, dropout=0.5, weight_decay=0.0,
            dtype=None):
    """Modified AlexNet teacher for CIFAR-10 (Table 5); ``weight_decay`` and ``dtype`` as
    in lenet5."""
    return _alexnet("alexnet", (48, 128, 192, 192, 128, 512, 256), input_shape,
                    num_classes, dropout, weight_decay, dtype)


def alexnet_half(input_shape=(32, 32, 3), num_classes=10, dropout=0.5, weight_decay=0.0,
                 dtype=None):
    """AlexNet-Half student for CIFAR-10 (Table 5)."""
    return _alexnet("alexnet_half", (24, 64, 96, 96, 64, 256, 128), input_shape,
                    num_classes, dropout, weight_decay, dtype)


REGISTRY = {
    "lenet5": lenet5,
    "lenet5_half": lenet5_half,
    "alexnet": alexnet,
    "alexnet_half": alexnet_half,
}


def get(name, **kwargs):
    """Builds a registered model by name, e.g. ``get("lenet5")``."""
    try:
        builder = REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown model {name!r}; choose one of {sorted(REGISTRY)}") from None
    return builder(**kwargs)


def precision(model):
    """The dtype policy of ``model``'s first layer computing in bfloat16 (``"mixed_bfloat16"``
    for a student built for it), else ``"float32"``: the ``student_precision`` it fits."""
    for layer in model.layers:
        if getattr(layer, "compute_dtype", None) == "bfloat16":
            return layer.dtype_policy.name
    return "float32"


def with_dtype_policy(model, policy):
    """A copy of a functional or sequential ``model`` whose layers use the Keras dtype
    ``policy`` (e.g. ``"mixed_bfloat16"``: float32 weights, bfloat16 compute), with the
    same weights."""
    def clone(layer):
        return layer.__class__.from_config({**layer.get_config(), "dtype": policy})

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    return copy


class ModelFileError(ValueError):
    """A file that exists is not a Keras model file this package can load."""


def load(path):
    """Loads a ``.keras`` model saved from this package (custom layers registered).

    Raises FileNotFoundError for a missing file and ModelFileError, one line naming the
    file and why, for one that is not a Keras model (Keras' own error calls a corrupt
    file "not found")."""
    from zskd_tf import io_utils
    problem = io_utils.keras_file_problem(path)
    if problem is None:
        try:
            return keras.models.load_model(path, compile=False)
        except Exception as e:  # whatever Keras fails on, the file is no model it reads
            problem = io_utils.short_reason(e)
    raise ModelFileError(f"{path} is not a Keras .keras model file: {problem}")

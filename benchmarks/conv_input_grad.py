r"""Input gradient of the space-to-depth teacher's two phase convolutions: TensorFlow's
``Conv2DBackpropInput`` against the same result as a forward convolution of the padded
upstream gradient with the flipped, transposed kernel (two padding variants).

    python -m benchmarks.conv_input_grad [--images=1000]

Prints microseconds per image for each variant (best of five rounds, interleaved) and
the forward convolution for scale; writes JSON.
"""
import time

from absl import app
from absl import flags

flags.DEFINE_integer("images", 1000, "Images per call (the crafting default).")
flags.DEFINE_integer("calls", 20, "Calls per timed round.")
flags.DEFINE_string("out", "benchmarks/results/conv_input_grad.json", "JSON output.")
FLAGS = flags.FLAGS

# (input, kernel) of teachers.space_to_depth's stage 1 and stage 2 for LeNet-5
SHAPES = [((8, 8, 16), (2, 2, 16, 96)), ((7, 7, 24), (3, 3, 24, 64))]


def main(_):
    import numpy as np
    import tensorflow as tf

    from benchmarks import common
    n = FLAGS.images
    rows = []
    for in_shape, k_shape in SHAPES:
        xs = (n, *in_shape)
        k = tf.random.normal(k_shape, seed=0)
        x = tf.random.normal(xs, seed=1)
        dy = tf.random.normal((n, in_shape[0] - k_shape[0] + 1, in_shape[1] - k_shape[1] + 1,
                               k_shape[3]), seed=2)
        flipped = tf.transpose(tf.reverse(k, [0, 1]), [0, 1, 3, 2])
        p = k_shape[0] - 1
        pads = [[0, 0], [p, p], [p, p], [0, 0]]
        variants = {
            "backprop_input": tf.function(lambda g: tf.raw_ops.Conv2DBackpropInput(
                input_sizes=xs, filter=k, out_backprop=g, strides=[1, 1, 1, 1],
                padding="VALID")),
            "flipped_conv_tf_pad": tf.function(
                lambda g: tf.nn.conv2d(tf.pad(g, pads), flipped, 1, "VALID")),
            "flipped_conv_explicit_pad": tf.function(
                lambda g: tf.nn.conv2d(g, flipped, 1, pads)),
        }
        ref = variants["backprop_input"](dy).numpy()
        for name, f in variants.items():
            np.testing.assert_allclose(f(dy).numpy(), ref, rtol=1e-4, atol=1e-3)
        variants["forward (for scale)"] = tf.function(lambda a: tf.nn.conv2d(a, k, 1, "VALID"))
        best = {}
        for _ in range(5):
            for name, f in variants.items():
                arg = x if name.startswith("forward") else dy
                f(arg).numpy()
                start = time.perf_counter()
                for _ in range(FLAGS.calls):
                    r = f(arg)
                r.numpy()
                us = (time.perf_counter() - start) / FLAGS.calls / n * 1e6
                best[name] = min(best.get(name, us), us)
        for name, us in best.items():
            rows.append({"input": list(in_shape), "kernel": list(k_shape), "variant": name,
                         "us_per_image": round(us, 3)})
    common.print_table([(str(r["input"]), str(r["kernel"]), r["variant"], r["us_per_image"])
                        for r in rows], ("input", "kernel", "variant", "us/image"))
    common.write_json(FLAGS.out, {"benchmark": "conv_input_grad",
                                  "machine": common.machine_info(),
                                  "settings": {"images": n, "calls": FLAGS.calls},
                                  "results": rows})


if __name__ == "__main__":
    app.run(main)

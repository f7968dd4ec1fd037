"""Student-side ablation: distil LeNet-5-Half on saved DIs with an L2 weight penalty
(TF1-reproduction style: decay * sum(kernel^2)/2 added to the unscaled KD loss, i.e.
tau^2 * decay in our tau^2-scaled loss). Run from the repository root:
    python results/zskd/mnist_6000_recipe/student_decay.py NPY DECAY EPOCHS
NPY: impressions saved by run_recipe.py with $ZSKD_SAVE_DIR set. Prints a JSON line."""
import json, os, sys
import numpy as np, tensorflow as tf, keras
from zskd_tf import models, distill, data
npy, decay, epochs = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
x = np.load(npy)
teacher = models.load("pretrained/mnist_lenet5.keras")
d = data.load("mnist", os.environ.get("ZSKD_DATA_DIR"))
keras.utils.set_random_seed(0)
student = models.lenet5_half()
kernels = [w for w in student.trainable_weights if "kernel" in w.path]
class D(distill.Distiller):
    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        loss = super().compute_loss(x, y, y_pred, sample_weight, training)
        return loss + 400.0 * decay * tf.add_n([tf.reduce_sum(tf.square(k)) for k in kernels]) / 2
dist = D(student, teacher, temperature=20.0)
distill.compile_distiller(dist, 1e-2)
ds = tf.data.Dataset.from_tensor_slices(x).shuffle(len(x), seed=0).batch(512)
accs = []
class Ev(keras.callbacks.Callback):
    def on_epoch_end(self, e, logs=None):
        if (e + 1) % 25 == 0:
            p = student.predict(d.x_test, batch_size=2000, verbose=0).argmax(1)
            accs.append((e + 1, float((p == d.y_test).mean()))); print(accs[-1], flush=True)
dist.fit(ds, epochs=epochs, verbose=0, callbacks=[Ev()])
print(json.dumps(dict(npy=npy, decay=decay, epochs=epochs, acc=accs)))

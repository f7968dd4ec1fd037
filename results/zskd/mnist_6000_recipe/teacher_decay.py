"""LeNet-5 teacher with the TF1 reproduction's L2 weight decay: CE + decay * sum(kernel^2)/2,
Adam 1e-3, batch 512, seed 0. Run from the repository root:
    python results/zskd/mnist_6000_recipe/teacher_decay.py DECAY EPOCHS OUT.keras
Prints epoch, last batch loss, test accuracy per epoch."""
import os, sys, numpy as np, tensorflow as tf, keras
from zskd_tf import models, data
decay, epochs, out = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
d = data.load("mnist", os.environ.get("ZSKD_DATA_DIR"))
keras.utils.set_random_seed(0)
m = models.lenet5()
kernels = [w for w in m.trainable_weights if "kernel" in w.path]
opt = keras.optimizers.Adam(1e-3)
@tf.function
def step(x, y):
    with tf.GradientTape() as tape:
        logits = m(x, training=True)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
        loss += decay * tf.add_n([tf.reduce_sum(tf.square(k)) for k in kernels]) / 2
    g = tape.gradient(loss, m.trainable_weights)
    opt.apply_gradients(zip(g, m.trainable_weights))
    return loss
ds = tf.data.Dataset.from_tensor_slices((d.x_train, d.y_train.astype(np.int32))).shuffle(60000, seed=0).batch(512)
for e in range(epochs):
    for x, y in ds:
        l = step(x, y)
    acc = (m.predict(d.x_test, batch_size=2000, verbose=0).argmax(1) == d.y_test).mean()
    print(e + 1, float(l), acc, flush=True)
m.save(out)

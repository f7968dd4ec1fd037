"""6000 MNIST DIs at the headline crafting settings: independent batches vs the authors' chain
(each (class, beta) row's batches start from the previous batch's images; Adam state kept).

Ad hoc ablation script, run from the repository root as
    python results/zskd/mnist_6000_ablation/run_ablation.py MODE N EPOCHS LR PIXEL
e.g. ``chain 6000 200 3.0 minmax``; writes ablation_MODE_N_LR_PIXEL.json in the working
directory. Data from $ZSKD_DATA_DIR (the runs used /work/data, written literally there).
Students: LeNet-5-Half, Adam lr 0.01, batch 512, test accuracy every 25 epochs (final-epoch
figure is the result; no selection). Uses Crafter internals to continue a chain.
"""
import json, sys, time, numpy as np, tensorflow as tf, keras
from zskd_tf import impressions, similarity, targets as T, models, distill, data
mode = sys.argv[1]; N = int(sys.argv[2]) if len(sys.argv) > 2 else 6000
epochs = int(sys.argv[3]) if len(sys.argv) > 3 else 200
lr_craft = float(sys.argv[4]) if len(sys.argv) > 4 else 3.0
pixel = sys.argv[5] if len(sys.argv) > 5 else "minmax"
teacher = models.load("pretrained/mnist_lenet5.keras")
_, alpha = similarity.from_model(teacher)
tg = T.sample(alpha, N, betas=(1.0, 0.1), seed=0)
y = tg.targets.astype(np.float32)
B = 100; rows = 20; per_row = N // rows // B
cfg = impressions.CraftConfig(lr=lr_craft, batch_size=B, iterations=1500, pixel=pixel)
cr = impressions.Crafter(teacher, cfg, progress_every=500)
t0 = time.time()
if mode == "independent":
    out = cr.craft(y, list(range(N // B)), seed=1)
    x = out.images; losses = out.loss
else:
    # round j crafts batch j of every row at once; rows are contiguous blocks of per_row*B
    idx = lambda j: np.concatenate([np.arange(r * per_row * B + j * B, r * per_row * B + (j + 1) * B) for r in range(rows)])
    xs = np.zeros((N, 32, 32, 1), np.float32); losses = np.zeros(N, np.float32)
    for j in range(per_row):
        yy = y[idx(j)]
        if j == 0:
            out = cr.craft(yy, [r * per_row for r in range(rows)], seed=1)
        else:
            cr.y.assign(yy)  # continue from the current images and Adam state
            cr._step_fn(tf.constant(1500), False)
            logits, ce = cr._loss_terms(cr.x)
            out = impressions.Crafted(cr.fast.from_internal(cr.x).numpy(), None, ce.numpy(), None)
        xs[idx(j)] = out.images; losses[idx(j)] = out.loss
        print("round", j, "loss %.3f" % out.loss.mean(), flush=True)
    x = xs
craft_s = time.time() - t0
d = data.load("mnist", None)
student = models.lenet5_half()
keras.utils.set_random_seed(0)
dist = distill.Distiller(student, teacher, temperature=20.0)
distill.compile_distiller(dist, 1e-2)
ds = tf.data.Dataset.from_tensor_slices(x).shuffle(N, seed=0).batch(512)
accs = []
class Ev(keras.callbacks.Callback):
    def on_epoch_end(self, e, logs=None):
        if (e + 1) % 25 == 0:
            accs.append((e + 1, float((student.predict(d.x_test, batch_size=2000, verbose=0).argmax(1) == d.y_test).mean())))
            print(accs[-1], flush=True)
dist.fit(ds, epochs=epochs, verbose=0, callbacks=[Ev()])
res = dict(mode=mode, n=N, lr=lr_craft, pixel=pixel, craft_seconds=craft_s, craft_loss=float(losses.mean()),
           pixel_mean=float(x.mean()), pixel_std=float(x.std()), acc=accs)
print(json.dumps(res))
json.dump(res, open(f"ablation_{mode}_{N}_{lr_craft}_{pixel}.json", "w"))

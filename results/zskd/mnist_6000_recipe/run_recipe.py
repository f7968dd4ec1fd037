"""6,000 MNIST DIs (independent batches of 100, 1,500 Adam steps, betas 1.0/0.1, tau 20),
varying the crafting recipe: initial noise, pixel handling, image L2 penalty, lr.

Ad hoc ablation script, run from the repository root as
    python results/zskd/mnist_6000_recipe/run_recipe.py INIT PIXEL LR L2 [EPOCHS]
e.g. ``normal clip_end 3.0 0.001``; INIT ``real`` skips crafting and distils on 6,000
random MNIST training images instead (no labels: the ceiling of this student schedule,
the paper's "Soft-logits" row at this size). Writes recipe_INIT_PIXEL_LR_L2.json in the working
directory. Data from $ZSKD_DATA_DIR; teacher from $ZSKD_TEACHER (default: the committed
pretrained one). Student: LeNet-5-Half, Adam lr 0.01, batch 512,
200 epochs, test accuracy every 25 epochs (final-epoch figure is the result).
"""
import json, os, sys, time
import numpy as np, tensorflow as tf, keras
from zskd_tf import impressions, similarity, targets as T, models, distill, data, report

init, pixel, lr, l2 = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
epochs = int(sys.argv[5]) if len(sys.argv) > 5 else 200
N, B = 6000, 100
teacher_path = os.environ.get("ZSKD_TEACHER", "pretrained/mnist_lenet5.keras")
teacher = models.load(teacher_path)
_, alpha = similarity.from_model(teacher)
tg = T.sample(alpha, N, betas=(1.0, 0.1), seed=0)
y = tg.targets.astype(np.float32)
d = data.load("mnist", os.environ.get("ZSKD_DATA_DIR"))
t0 = time.time()
if init == "real":
    x = d.x_train[np.random.default_rng(0).choice(len(d.x_train), N, replace=False)]
    soft = tf.nn.softmax(teacher.predict(x, batch_size=2000, verbose=0) / 20.0).numpy()
    out = impressions.Crafted(x, soft, np.zeros(N, np.float32), None)
else:
    cfg = impressions.CraftConfig(lr=lr, batch_size=B, iterations=1500, pixel=pixel,
                                  init=init, image_l2=l2)
    out = impressions.Crafter(teacher, cfg, progress_every=500).craft(
        y, list(range(N // B)), seed=1)
craft_s = time.time() - t0
x = out.images
name = f"recipe_{init}_{pixel}_{lr}_{l2}"
if "ZSKD_TEACHER" in os.environ:
    name += "_teacher_" + os.path.splitext(os.path.basename(teacher_path))[0]
if os.environ.get("ZSKD_SAVE_DIR"):  # keep the impressions for student-side ablations
    np.save(os.path.join(os.environ["ZSKD_SAVE_DIR"], name + ".npy"), x)
if init != "real":
    pick = report.pick_per_class(tg.classes, 3)
    report.impression_grid_figure(x[pick], y[pick], tg.classes[pick]).savefig(name + ".png",
                                                                              dpi=60)
teacher_acc = float((teacher.predict(d.x_test, batch_size=2000, verbose=0).argmax(1)
                     == d.y_test).mean())
agree = float((out.soft_labels.argmax(1) == y.argmax(1)).mean())
keras.utils.set_random_seed(0)
student = models.lenet5_half()
dist = distill.Distiller(student, teacher, temperature=20.0)
distill.compile_distiller(dist, 1e-2)
ds = tf.data.Dataset.from_tensor_slices(x).shuffle(N, seed=0).batch(512)
accs = []


class Ev(keras.callbacks.Callback):
    def on_epoch_end(self, e, logs=None):
        if (e + 1) % 25 == 0:
            p = student.predict(d.x_test, batch_size=2000, verbose=0).argmax(1)
            accs.append((e + 1, float((p == d.y_test).mean())))
            print(accs[-1], flush=True)


dist.fit(ds, epochs=epochs, verbose=0, callbacks=[Ev()])
res = dict(command="python " + " ".join(sys.argv), teacher=teacher_path, init=init, pixel=pixel, lr=lr, image_l2=l2,
           n=N, craft_seconds=craft_s, craft_loss=float(out.loss.mean()),
           teacher_argmax_equals_target=agree, teacher_test_accuracy=teacher_acc,
           pixel_mean=float(x.mean()), pixel_std=float(x.std()),
           frac_zero=float((x == 0).mean()), frac_one=float((x == 1).mean()), acc=accs)
print(json.dumps(res))
json.dump(res, open(name + ".json", "w"), indent=1)

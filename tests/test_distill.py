import keras
import numpy as np
import pytest

from conftest import blob_images
from zskd_tf import data as data_lib
from zskd_tf import distill
from zskd_tf import models
from zskd_tf import training


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_kd_loss_matches_hand_computation():
    t = np.array([[2.0, -1.0, 0.5], [0.0, 3.0, -2.0]], np.float32)
    s = np.array([[1.0, 0.0, -1.0], [0.5, 0.5, 0.5]], np.float32)
    tau = 4.0
    p_t, p_s = _softmax(t / tau), _softmax(s / tau)
    expected = tau ** 2 * np.mean(-(p_t * np.log(p_s)).sum(-1))
    assert float(distill.kd_loss(t, s, tau)) == pytest.approx(expected, rel=1e-5)
    # at tau = 1 with one-hot-like teacher it reduces to cross-entropy
    hard = np.array([[50.0, 0.0, 0.0]], np.float32)
    assert float(distill.kd_loss(hard, s[:1], 1.0)) == pytest.approx(
        -np.log(_softmax(s[:1])[0, 0]), rel=1e-4)


def _blob_dataset(train, test):
    """A ``data.Dataset`` of ``blob_images``: ``train`` training and ``test`` test images."""
    (x, y), (xt, yt) = blob_images(train, seed=1), blob_images(test, seed=2)
    return data_lib.Dataset(x, y, xt, yt, 10, tuple("0123456789"), "blobs")


def test_teacher_trained_few_steps_beats_chance(tmp_path):
    keras.utils.set_random_seed(0)
    ds = _blob_dataset(1200, 300)
    model = models.lenet5()
    result = distill.train_classifier(model, ds, workdir=str(tmp_path), stage="teacher",
                                      epochs=2, lr=3e-3, batch_size=64, verbose=0)
    assert result["test_accuracy"] > 50.0  # chance is 10%
    assert result["epochs"] == 2 and result["mean_epoch_seconds"] > 0
    assert (tmp_path / "teacher.keras").exists()
    assert (tmp_path / "tb" / "teacher").is_dir()


def test_distiller_transfers_teacher_knowledge(tiny_teacher, tmp_path):
    keras.utils.set_random_seed(1)
    x, _ = blob_images(1024, seed=3)
    xt, yt = blob_images(300, seed=4)
    teacher_pred = tiny_teacher.predict(xt, verbose=0).argmax(1)
    student = models.lenet5_half()
    before = (student.predict(xt, verbose=0).argmax(1) == teacher_pred).mean()
    distiller = distill.compile_distiller(distill.Distiller(student, tiny_teacher, 20.0), 1e-2)
    hist = distiller.fit(data_lib.make_dataset(x, batch_size=64, shuffle=True, seed=0),
                         epochs=3, verbose=0)
    after = (student.predict(xt, verbose=0).argmax(1) == teacher_pred).mean()
    assert hist.history["kd_loss"][-1] < hist.history["kd_loss"][0]
    assert after > max(0.6, before + 0.3)
    assert not tiny_teacher.trainable and len(distiller.trainable_weights) == len(
        student.trainable_weights)


def test_hard_label_term_is_added():
    teacher, student = models.lenet5(), models.lenet5_half()
    x, y = blob_images(8)
    y_pred = student(x)
    d0 = distill.Distiller(student, teacher, 20.0, hard_label_weight=0.0)
    d1 = distill.Distiller(student, teacher, 20.0, hard_label_weight=0.3)
    ce = keras.losses.SparseCategoricalCrossentropy(from_logits=True)(y, y_pred)
    l0 = float(d0.compute_loss(x, y, y_pred))
    l1 = float(d1.compute_loss(x, y, y_pred))
    assert l1 - l0 == pytest.approx(0.3 * float(ce), rel=1e-4)


def test_student_weight_decay_is_added_and_teacher_decay_is_not():
    teacher = models.lenet5(weight_decay=1e-2)
    x, _ = blob_images(8)
    plain, decayed = models.lenet5_half(), models.lenet5_half(weight_decay=1e-2)
    decayed.set_weights(plain.get_weights())
    y_pred = plain(x)
    l0 = float(distill.Distiller(plain, teacher).compute_loss(x, None, y_pred))
    l1 = float(distill.Distiller(decayed, teacher).compute_loss(x, None, y_pred))
    assert l1 - l0 == pytest.approx(float(sum(decayed.losses)), rel=1e-4)
    assert l1 - l0 > 0


class _Stop(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            raise KeyboardInterrupt


def test_fit_resumes_after_interruption_and_reuses_finished_stage(tmp_path):
    keras.utils.set_random_seed(2)
    x, y = blob_images(256)
    ds = data_lib.make_dataset(x, y, batch_size=64)
    model = distill.compile_classifier(models.lenet5_half(), 1e-3)
    with pytest.raises(KeyboardInterrupt):
        training.fit(model, ds, epochs=4, workdir=str(tmp_path), stage="s", verbose=0,
                     extra_callbacks=[_Stop()])
    model2 = distill.compile_classifier(models.lenet5_half(), 1e-3)
    summary = training.fit(model2, ds, epochs=4, workdir=str(tmp_path), stage="s", verbose=0)
    history = training.read_history(str(tmp_path / "s_history.csv"))
    assert history["epoch"] == [0.0, 1.0, 2.0, 3.0]  # resumed at epoch 2, not from scratch
    assert summary["epochs"] == 4 and not summary["reused"]
    model3 = models.lenet5_half()
    again = training.fit(distill.compile_classifier(model3, 1e-3), ds, epochs=4,
                         workdir=str(tmp_path), stage="s", verbose=0)
    assert again["reused"]
    np.testing.assert_array_equal(model3.predict(x[:4], verbose=0),
                                  model2.predict(x[:4], verbose=0))


def test_history_keeps_test_accuracy_logged_every_few_epochs(tmp_path):
    """Impressions carry no labels: val_accuracy first appears at the first evaluation."""
    keras.utils.set_random_seed(3)
    x, y = blob_images(128)
    teacher, student = models.lenet5(), models.lenet5_half()
    distiller = distill.compile_distiller(distill.Distiller(student, teacher), 1e-3)
    distiller(x[:1])
    images = data_lib.make_dataset(x, batch_size=64)
    test = data_lib.make_dataset(x, y, batch_size=64)
    with pytest.raises(KeyboardInterrupt):
        training.fit(distiller, images, epochs=4, workdir=str(tmp_path), stage="d",
                     validation_data=test, validation_freq=2, verbose=0, export=student,
                     extra_callbacks=[_Stop()])
    training.fit(distiller, images, epochs=4, workdir=str(tmp_path), stage="d",
                 validation_data=test, validation_freq=2, verbose=0, export=student)
    text = (tmp_path / "d_history.csv").read_text()
    assert text.count("epoch") == text.splitlines()[0].count("epoch")  # one header
    history = training.read_history(str(tmp_path / "d_history.csv"))
    assert history["epoch"] == [0.0, 1.0, 2.0, 3.0]
    acc = history["val_accuracy"]
    assert acc[0] != acc[0] and acc[2] != acc[2]  # not evaluated: NaN
    assert 0.0 <= acc[1] <= 1.0 and 0.0 <= acc[3] <= 1.0
    assert training.max_monitored_accuracy(str(tmp_path), "d") == pytest.approx(
        100 * max(acc[1], acc[3]))


def test_teacher_trains_with_flip_crop_and_rejects_unknown_augmentation(tmp_path):
    keras.utils.set_random_seed(0)
    ds = _blob_dataset(600, 200)
    result = distill.train_classifier(models.lenet5(), ds, workdir=str(tmp_path / "a"),
                                      stage="teacher", epochs=2, lr=3e-3, batch_size=64,
                                      verbose=0, augment="flip_crop")
    assert result["epochs"] == 2 and result["test_accuracy"] > 20.0
    with pytest.raises(ValueError, match="augment"):
        distill.train_classifier(models.lenet5(), ds, workdir=str(tmp_path / "b"),
                                 stage="teacher", epochs=1, lr=3e-3, augment="mixup")


def test_lr_drops_follow_the_epoch_also_across_a_resume(tmp_path):
    keras.utils.set_random_seed(0)
    ds = _blob_dataset(256, 64)
    model = models.lenet5_half()
    args = dict(workdir=str(tmp_path), stage="teacher", lr=1e-2, batch_size=64, verbose=0,
                eval_every=0)
    distill.train_classifier(model, ds, epochs=2, lr_drops=[1, 3], **args)
    # the same run continued to 4 epochs: epoch 2 keeps epoch 1's rate, epoch 3 drops again
    result = distill.train_classifier(model, ds, epochs=4, lr_drops=[1, 3], **args)
    rates = training.read_history(str(tmp_path / result["history_csv"]))["learning_rate"]
    np.testing.assert_allclose(rates, [1e-2, 1e-3, 1e-3, 1e-4], rtol=1e-6)
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(1e-4)
    with pytest.raises(ValueError, match="lr_drops"):
        distill.train_classifier(model, ds, epochs=4, lr_drops=[0], **args)


def _dropout_net():
    """A small classifier with Dropout: its masks are a random stream of their own."""
    return keras.Sequential([
        keras.Input((32, 32, 1)), keras.layers.Conv2D(4, 5, strides=2, activation="relu"),
        keras.layers.Flatten(), keras.layers.Dropout(0.5), keras.layers.Dense(10)])


@pytest.mark.parametrize("build", [models.lenet5_half, _dropout_net])
def test_a_resumed_classifier_run_is_bit_identical_and_other_settings_are_refused(
        tmp_path, build):
    ds = _blob_dataset(200, 50)
    args = dict(stage="teacher", lr=3e-3, batch_size=64, verbose=0, eval_every=0,
                augment="flip_crop", lr_drops=[2], seed=5)

    def model():
        keras.utils.set_random_seed(0)
        return build()

    whole = model()
    distill.train_classifier(whole, ds, workdir=str(tmp_path / "a"), epochs=3, **args)
    # stopped after epoch 1, rerun to 3 by a new process (a fresh model and stream)
    distill.train_classifier(model(), ds, workdir=str(tmp_path / "b"), epochs=1, **args)
    resumed = model()
    distill.train_classifier(resumed, ds, workdir=str(tmp_path / "b"), epochs=3, **args)
    for a, b in zip(whole.get_weights(), resumed.get_weights()):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(training.StageMismatch, match=r"augment.*differ.*empty --workdir"):
        distill.train_classifier(model(), ds, workdir=str(tmp_path / "b"), epochs=4,
                                 **{**args, "augment": None})


def test_evaluate_reports_accuracy_per_class_and_predicted_shares():
    logits = np.array([[5, 0, 0], [5, 0, 0], [0, 5, 0], [5, 0, 0]], np.float32)

    class Fixed:
        def predict(self, x, batch_size=None, verbose=0):
            return logits

    result = distill.evaluate(Fixed(), np.zeros((4, 1)), np.array([0, 1, 1, 0]))
    assert result["test_accuracy"] == 75.0
    assert result["per_class_accuracy"] == [100.0, 50.0, None]  # no test image of class 2
    assert result["predicted_share"] == [75.0, 25.0, 0.0]


def test_stored_soft_labels_give_the_teacher_in_the_loop_loss(tiny_teacher, tmp_path):
    """The labels stored with crafted impressions (from the crafting teacher path) give
    the loss the Distiller computes by running the Keras teacher, up to float32 rounding."""
    from conftest import small_craft
    from zskd_tf import scheduling, store
    t, config = small_craft(tiny_teacher, 40)
    scheduling.craft_transfer_set(str(tmp_path), tiny_teacher, t, config, seed=5,
                                  parallel_batches=4)
    stored = store.load(str(tmp_path), keys=("images", "soft_labels"))
    logits = models.lenet5_half()(stored["images"])
    in_loop = distill.kd_loss(tiny_teacher(stored["images"], training=False), logits,
                              config.temperature)
    from_stored = distill.kd_loss_from_soft_labels(stored["soft_labels"], logits,
                                                   config.temperature)
    assert float(from_stored) == pytest.approx(float(in_loop), rel=1e-5)


class _NoTeacher(keras.Model):
    """Stands in for a teacher that must not be run."""

    def __init__(self, teacher):
        super().__init__()
        self.inner = teacher

    def call(self, x, training=False):
        raise AssertionError("the teacher ran")


def test_distiller_with_soft_labels_never_runs_the_teacher_and_matches_it(tiny_teacher):
    keras.utils.set_random_seed(1)
    x = np.random.default_rng(0).uniform(0, 1, (64, 32, 32, 1)).astype(np.float32)
    soft = _softmax(tiny_teacher.predict(x, verbose=0) / 20.0).astype(np.float32)
    test = data_lib.make_dataset(*blob_images(32, seed=3), batch_size=16)

    def fit(teacher, labels, validation=None):
        keras.utils.set_random_seed(2)
        distiller = distill.compile_distiller(distill.Distiller(
            models.lenet5_half(), teacher, temperature=20.0, soft_labels=labels), 1e-3)
        ds = data_lib.make_dataset(x, soft if labels else None, batch_size=16)
        return distiller.fit(ds, epochs=2, verbose=0, validation_data=validation).history

    in_loop = fit(tiny_teacher, False, test)
    np.testing.assert_allclose(fit(_NoTeacher(tiny_teacher), True)["kd_loss"],
                               in_loop["kd_loss"], rtol=1e-4)
    # a test set carries class labels: the teacher labels it, accuracy is tracked
    stored = fit(tiny_teacher, True, test)
    for key in ("kd_loss", "val_kd_loss", "val_accuracy"):
        np.testing.assert_allclose(stored[key], in_loop[key], rtol=1e-4)
    with pytest.raises(ValueError, match="hard_label_weight"):
        distill.Distiller(models.lenet5_half(), tiny_teacher, soft_labels=True,
                          hard_label_weight=0.3)

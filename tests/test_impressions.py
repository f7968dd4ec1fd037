import numpy as np
import pytest

from zskd_tf import config as config_lib
from zskd_tf import impressions
from zskd_tf import similarity
from zskd_tf import targets as targets_lib


def _targets(teacher, n, seed=0):
    _, alpha = similarity.from_model(teacher)
    return targets_lib.sample(alpha, n, betas=(1.0, 0.1), seed=seed).targets


def _teacher_ce(teacher, x, y, temperature=20.0):
    import tensorflow as tf
    logits = teacher(x, training=False) / temperature
    return tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=logits).numpy()


def test_crafting_lowers_loss_and_moves_softmax_toward_targets(tiny_teacher):
    y = _targets(tiny_teacher, 40)
    config = config_lib.CraftConfig(lr=0.5, batch_size=10, iterations=60)
    out = impressions.Crafter(tiny_teacher, config).craft(y, range(4), seed=1)
    x0 = impressions.initial_noise(range(4), 10, (32, 32, 1), seed=1)
    before = _teacher_ce(tiny_teacher, x0, y)
    assert out.loss.mean() < before.mean() - 0.05
    np.testing.assert_allclose(out.loss, _teacher_ce(tiny_teacher, out.images, y), rtol=1e-4)
    # KL(target || teacher softmax) falls for most images
    entropy = -(y * np.log(np.clip(y, 1e-12, 1))).sum(1)
    assert ((out.loss - entropy) < (before - entropy)).mean() > 0.9
    assert out.soft_labels.shape == (40, 10)
    np.testing.assert_allclose(out.soft_labels.sum(1), 1.0, atol=1e-5)
    # minmax: every crafting batch spans exactly [0, 1]
    blocks = out.images.reshape(4, -1)
    np.testing.assert_allclose(blocks.min(1), 0.0, atol=1e-6)
    np.testing.assert_allclose(blocks.max(1), 1.0, atol=1e-6)
    assert (out.steps == 60).all()


@pytest.mark.parametrize("iterations,fast", [(3, True), (30, True), (3, False)])
def test_result_does_not_depend_on_parallelism(tiny_teacher, iterations, fast):
    """Same seeds, 8 batches at once vs 2 at a time vs 1 alone: the same impressions.

    Kernels blocked for different batch sizes round differently (~1e-6); Adam's
    normalised steps amplify that to a few 1e-5 within 3 steps at lr 0.3 with AVX-512
    kernels (Zen 5), against below 1e-5 on AVX2 (Zen 3). A batch mixed with its
    neighbours (shared loss or min-max) would differ by ~1e-1. Crafting is
    chaotic at large learning rates (at lr 0.3 such a difference grows to 1e-2 in some
    pixels within 30 steps, for either teacher path), so the long run uses lr 0.1 and is
    compared by the teacher's loss and by nearly all pixels.
    """
    y = _targets(tiny_teacher, 40, seed=2)
    lr = 0.3 if iterations <= 3 else 0.1
    config = config_lib.CraftConfig(lr=lr, batch_size=5, iterations=iterations)
    crafter = impressions.Crafter(tiny_teacher, config, fast=fast)
    together = crafter.craft(y, range(8), seed=3)
    pairs = [crafter.craft(y[i:i + 10], range(i // 5, i // 5 + 2), seed=3)
             for i in range(0, 40, 10)]
    alone = crafter.craft(y[15:20], [3], seed=3)
    pair_images = np.concatenate([p.images for p in pairs])
    pair_loss = np.concatenate([p.loss for p in pairs])
    if iterations <= 3:
        np.testing.assert_allclose(together.images, pair_images, atol=1e-4)
        np.testing.assert_allclose(together.images[15:20], alone.images, atol=1e-4)
    assert (np.abs(together.images - pair_images) > 1e-4).mean() < 0.05
    np.testing.assert_allclose(together.loss, pair_loss, atol=2e-3)
    np.testing.assert_allclose(together.loss[15:20], alone.loss, atol=2e-3)
    # a different seed gives different images: the comparison above is not vacuous
    other = crafter.craft(y[15:20], [3], seed=4)
    assert np.abs(other.images - alone.images).mean() > 0.05


@pytest.mark.parametrize("pixel", ["clip", "none"])
def test_pixel_modes(tiny_teacher, pixel):
    y = _targets(tiny_teacher, 20)
    config = config_lib.CraftConfig(lr=0.5, batch_size=10, iterations=20, pixel=pixel)
    out = impressions.Crafter(tiny_teacher, config).craft(y, range(2), seed=0)
    if pixel == "clip":
        assert out.images.min() >= 0.0 and out.images.max() <= 1.0
    else:
        assert out.images.min() < 0.0 or out.images.max() > 1.0


def test_clip_end_is_none_then_one_clip(tiny_teacher):
    y = _targets(tiny_teacher, 20)
    kw = dict(lr=0.5, batch_size=10, iterations=20, init="normal")
    free = impressions.Crafter(tiny_teacher, config_lib.CraftConfig(pixel="none", **kw)) \
        .craft(y, range(2), seed=0)
    end = impressions.Crafter(tiny_teacher, config_lib.CraftConfig(pixel="clip_end", **kw)) \
        .craft(y, range(2), seed=0)
    np.testing.assert_allclose(end.images, np.clip(free.images, 0, 1), atol=1e-6)
    assert (end.images == 0).mean() > 0.05 and (end.images == 1).mean() > 0.05
    # loss and soft labels describe the clipped images that are returned
    np.testing.assert_allclose(end.loss, _teacher_ce(tiny_teacher, end.images, y), rtol=1e-4)
    assert np.abs(end.loss - free.loss).max() > 1e-3


def test_normal_init():
    x = impressions.initial_noise(range(3), 50, (8, 8, 1), seed=0, init="normal").numpy()
    assert abs(x.mean()) < 0.05 and abs(x.std() - 1) < 0.05 and x.min() < -2


@pytest.mark.parametrize("fast", [True, False])
def test_image_l2_shrinks_images_and_keeps_batches_independent(tiny_teacher, fast):
    y = _targets(tiny_teacher, 20)
    kw = dict(lr=0.05, batch_size=10, iterations=30, pixel="none", init="normal")
    plain = impressions.Crafter(tiny_teacher, config_lib.CraftConfig(**kw), fast=fast) \
        .craft(y, range(2), seed=0)
    crafter = impressions.Crafter(tiny_teacher, config_lib.CraftConfig(image_l2=50.0, **kw),
                                  fast=fast)
    shrunk = crafter.craft(y, range(2), seed=0)
    assert (shrunk.images ** 2).mean() < 0.8 * (plain.images ** 2).mean()
    alone = crafter.craft(y[10:], [1], seed=0)
    np.testing.assert_allclose(shrunk.images[10:], alone.images, atol=1e-4)


def test_class_impressions_stop_at_their_confidence(tiny_teacher):
    import tensorflow as tf
    y = np.eye(10, dtype=np.float32)[np.arange(10) % 10]
    thresholds = impressions.class_impression_thresholds(10, seed=0)
    config = config_lib.CraftConfig(lr=0.02, batch_size=1, iterations=400, temperature=1.0)
    out = impressions.Crafter(tiny_teacher, config).craft(y, range(10), seed=0,
                                                          thresholds=thresholds)
    conf = tf.nn.softmax(tiny_teacher(out.images, training=False)).numpy()
    reached = conf[np.arange(10), np.arange(10)]
    assert (reached >= thresholds).all()
    assert (out.steps < 400).all() and (out.steps > 0).any()
    # stopped at the first step that reached the threshold: one step fewer is below it
    i = int(np.argmax(out.steps))
    assert out.steps[i] >= 2
    for its, below in ((int(out.steps[i]) - 1, True), (int(out.steps[i]), False)):
        cfg = config_lib.CraftConfig(lr=0.02, batch_size=1, iterations=its, temperature=1.0)
        alone = impressions.Crafter(tiny_teacher, cfg).craft(y[i:i + 1], [i], seed=0)
        conf_i = tf.nn.softmax(tiny_teacher(alone.images, training=False)).numpy()[0, i]
        assert (conf_i < thresholds[i]) == below
    np.testing.assert_allclose(alone.images[0], out.images[i], atol=1e-6)


@pytest.mark.parametrize("fast", [True, False])
def test_class_impressions_with_clip_end_judge_the_clipped_image(tiny_teacher, fast):
    """The stop test must see the image that is returned (clipped), not the free one."""
    y = np.eye(10, dtype=np.float32)
    thresholds = impressions.class_impression_thresholds(10, seed=0)
    config = config_lib.CraftConfig(lr=0.1, batch_size=1, iterations=300, temperature=1.0,
                                     init="normal", pixel="clip_end")
    out = impressions.Crafter(tiny_teacher, config, fast=fast).craft(
        y, range(10), seed=0, thresholds=thresholds)
    stopped = out.steps < 300
    assert stopped.sum() >= 5
    reached = out.soft_labels[np.arange(10), np.arange(10)]
    assert (reached[stopped] >= thresholds[stopped]).all()
    assert out.images.min() >= 0 and out.images.max() <= 1


def test_thresholds_in_paper_range():
    t = impressions.class_impression_thresholds(1000, seed=0)
    assert t.min() >= 0.55 and t.max() <= 0.70


def test_bad_config():
    with pytest.raises(ValueError, match="pixel"):
        config_lib.CraftConfig(lr=1.0, pixel="tanh")
    with pytest.raises(ValueError, match="init"):
        config_lib.CraftConfig(lr=1.0, init="zeros")
    with pytest.raises(ValueError, match="image_l2"):
        config_lib.CraftConfig(lr=1.0, image_l2=-1.0)
    with pytest.raises(ValueError, match="lr"):
        config_lib.CraftConfig(lr=0.0)


@pytest.mark.parametrize("fast", [True, False])
def test_bfloat16_crafting_fits_as_well_and_reports_the_float32_teacher(tiny_teacher, fast):
    """bf16 arithmetic in the teacher only: the loss falls as far as in float32, and the
    returned losses and soft labels are the float32 teacher's on the returned images."""
    import tensorflow as tf
    y = _targets(tiny_teacher, 40)
    runs = {}
    for precision in config_lib.PRECISIONS:
        config = config_lib.CraftConfig(lr=0.5, batch_size=10, iterations=60,
                                         precision=precision)
        crafter = impressions.Crafter(tiny_teacher, config, fast=fast)
        if precision == "bfloat16" and not fast:
            assert crafter._compute.layers[1].compute_dtype == "bfloat16"
        runs[precision] = crafter.craft(y, range(4), seed=1)
    low, full = runs["bfloat16"], runs["float32"]
    np.testing.assert_allclose(low.loss, _teacher_ce(tiny_teacher, low.images, y), rtol=1e-4)
    exact = tf.nn.softmax(tiny_teacher(low.images, training=False) / 20.0).numpy()
    np.testing.assert_allclose(low.soft_labels, exact, atol=1e-5)
    before = _teacher_ce(tiny_teacher, impressions.initial_noise(range(4), 10, (32, 32, 1), 1), y)
    assert low.loss.mean() < before.mean() - 0.05
    assert abs(low.loss.mean() - full.loss.mean()) < 0.02
    assert np.abs(low.images - full.images).max() > 1e-3  # it did compute in bf16


def test_bad_precision_is_rejected():
    with pytest.raises(ValueError, match="precision"):
        config_lib.CraftConfig(lr=0.1, precision="float16")


def _poison_batch(monkeypatch, batch):
    """Makes one pixel of crafting batch ``batch``'s initial noise infinite."""
    import tensorflow as tf
    real = impressions.initial_noise

    def poisoned(batch_indices, batch_size, image_shape, seed, init="uniform"):
        x = real(batch_indices, batch_size, image_shape, seed, init).numpy()
        if batch in list(batch_indices):
            x[list(batch_indices).index(batch) * batch_size + 1].flat[7] = np.inf
        return tf.constant(x)
    monkeypatch.setattr(impressions, "initial_noise", poisoned)


@pytest.mark.parametrize("fast", [True, False])
def test_exploding_learning_rate_raises_naming_batch_and_step(tiny_teacher, fast):
    """A finite but huge lr with free pixels overflows the teacher within a few steps: an
    error naming the (global) batch and the step it was seen at, not NaN images."""
    y = _targets(tiny_teacher, 20)
    config = config_lib.CraftConfig(lr=1e38, batch_size=5, iterations=20, pixel="none")
    crafter = impressions.Crafter(tiny_teacher, config, progress_every=2, fast=fast)
    with pytest.raises(impressions.CraftingDiverged, match="--craft_lr.*--pixel") as e:
        crafter.craft(y, range(3, 7), seed=0)
    assert e.value.batch in range(3, 7) and e.value.step % 2 == 0  # seen at a chunk's end
    message = str(e.value)
    assert f"by step {e.value.step} of 20" in message
    assert f"crafting batch {e.value.batch} " in message


def test_non_finite_image_names_its_own_batch(tiny_teacher, monkeypatch):
    """Batches are independent: only the poisoned one goes bad, and it is the one named
    (pixels bounded by minmax, so the advice is the learning rate alone)."""
    _poison_batch(monkeypatch, 5)
    y = _targets(tiny_teacher, 20)
    config = config_lib.CraftConfig(lr=0.3, batch_size=5, iterations=4)
    with pytest.raises(impressions.CraftingDiverged, match="by step 4 of 4: .*batch 5 ") as e:
        impressions.Crafter(tiny_teacher, config).craft(y, range(3, 7), seed=0)
    assert (e.value.batch, e.value.step) == (5, 4)
    assert "5 bad images" in str(e.value) and "--pixel" not in str(e.value)

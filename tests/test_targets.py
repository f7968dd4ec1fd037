import numpy as np
import pytest

from zskd_tf import targets


def _alpha(k=10, seed=0):
    from zskd_tf import similarity
    w = np.random.default_rng(seed).normal(size=(32, k))
    return similarity.concentration(similarity.class_similarity(w))


def test_layout_follows_algorithm_1():
    t = targets.sample(_alpha(), 1000, betas=(1.0, 0.1), seed=1)
    assert len(t) == 1000 and t.targets.shape == (1000, 10)
    # class-major, then beta: 50 of class 0 at beta 1, 50 of class 0 at beta 0.1, ...
    np.testing.assert_array_equal(t.classes, np.repeat(np.arange(10), 100))
    np.testing.assert_array_equal(t.betas[:100], np.repeat(np.float32([1.0, 0.1]), 50))
    np.testing.assert_allclose(t.targets.sum(1), 1.0, atol=1e-5)
    assert (t.targets >= 0).all()
    # floor(N / K / B) per group
    assert len(targets.sample(_alpha(), 1019, betas=(1.0, 0.1))) == 1000


def test_sample_means_match_normalised_concentration():
    alpha = _alpha()
    for beta in (1.0, 0.1):
        t = targets.sample(alpha, 40000, betas=(beta,), seed=3)
        for k in (0, 7):
            conc = beta * alpha[k] + 1e-4
            mean = t.targets[t.classes == k].mean(0)
            np.testing.assert_allclose(mean, conc / conc.sum(), atol=0.015)


def test_variance_falls_as_beta_grows():
    alpha = _alpha()
    variances = []
    for beta in (0.1, 1.0, 10.0):
        t = targets.sample(alpha, 20000, betas=(beta,), seed=4)
        variances.append(t.targets[t.classes == 2].var(0).sum())
    assert variances[0] > variances[1] > variances[2]


def test_beta_really_scales_alpha():
    """The authors' code lost beta = 0.1; here the two halves must differ in spread."""
    t = targets.sample(_alpha(), 20000, betas=(1.0, 0.1), seed=5)
    peak = t.targets.max(1)
    assert peak[t.betas == np.float32(0.1)].mean() > peak[t.betas == 1.0].mean() + 0.1


def test_priors():
    alpha = _alpha()
    uni = targets.sample(alpha, 20000, betas=(1.0,), prior="uniform", seed=6)
    np.testing.assert_allclose(uni.targets[uni.classes == 3].mean(0), 0.1, atol=0.01)
    one = targets.sample(alpha, 100, betas=(1.0, 0.1), prior="one_hot")
    np.testing.assert_array_equal(one.targets, np.eye(10)[one.classes])
    assert len(one) == 100  # one-hot ignores the beta list: 10 per class


def test_seeded_and_reproducible():
    a = targets.sample(_alpha(), 200, seed=7).targets
    b = targets.sample(_alpha(), 200, seed=7).targets
    c = targets.sample(_alpha(), 200, seed=8).targets
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


@pytest.mark.parametrize("kwargs, message", [
    ({"betas": ()}, "non-empty"), ({"betas": (1.0, 0.0)}, "> 0"),
    ({"betas": (-1.0,)}, "> 0"), ({"prior": "gaussian"}, "prior"),
    ({"num_impressions": 15}, "fewer than classes x betas"),
])
def test_bad_arguments(kwargs, message):
    args = {"num_impressions": 100, **kwargs}
    with pytest.raises(ValueError, match=message):
        targets.sample(_alpha(), **args)


def test_expected_class_share_matches_the_mean_of_a_sampled_transfer_set():
    alpha = _alpha(seed=2)
    t = targets.sample(alpha, 40000, betas=(1.0, 0.1), seed=8)
    share = targets.expected_class_share(alpha, (1.0, 0.1))
    np.testing.assert_allclose(share.sum(), 1.0, atol=1e-12)
    np.testing.assert_allclose(t.targets.mean(0), share, atol=0.004)
    assert share.max() - share.min() > 0.02  # a real prior is not flat
    np.testing.assert_allclose(targets.expected_class_share(alpha, prior="uniform"), 0.1)
    np.testing.assert_allclose(targets.expected_class_share(alpha, prior="one_hot"), 0.1)
    with pytest.raises(ValueError, match="prior"):
        targets.expected_class_share(alpha, prior="flat")

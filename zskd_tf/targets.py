"""Soft targets for crafting (Algorithm 1, lines 4-8), sampled with TFP's Dirichlet."""
import dataclasses

import numpy as np
import tensorflow as tf
import tensorflow_probability as tfp
from absl import logging

from zskd_tf import paper

PRIORS = ("class_similarity", "uniform", "one_hot")


@dataclasses.dataclass(frozen=True)
class Targets:
    """N sampled softmax vectors with the class and beta each was drawn for."""
    targets: np.ndarray    # (N, K) float32, rows sum to 1
    classes: np.ndarray    # (N,) int32
    betas: np.ndarray      # (N,) float32; 0 for one-hot targets

    def __len__(self):
        return len(self.classes)


def per_group(num_impressions, num_classes, num_betas):
    """Impressions per (class, beta): floor(floor(N / K) / B)."""
    n = num_impressions // num_classes // num_betas
    if n < 1:
        raise ValueError(
            f"num_impressions={num_impressions} is fewer than classes x betas = "
            f"{num_classes} x {num_betas}: every (class, beta) needs at least one impression")
    return n


def sample(concentration, num_impressions, betas=paper.BETAS, prior="class_similarity",
           seed=0, eps=paper.DIRICHLET_EPS):
    """Samples targets class by class, then beta by beta (the order of Algorithm 1).

    concentration: (K, K) matrix whose row k is alpha^k (see ``similarity.concentration``);
    only its shape is used for the ``uniform`` (alpha = 1) and ``one_hot`` priors.
    Each (class, beta) group draws from Dir(K, beta * alpha^k + eps) with its own stateless
    seed, so a group's samples do not depend on the other groups.
    """
    alpha, betas = _checked(concentration, betas, prior)
    num_classes = alpha.shape[0]
    if prior == "one_hot":
        betas = [0.0]
    n = per_group(num_impressions, num_classes, len(betas))
    parts, classes, beta_col = [], [], []
    for k in range(num_classes):
        for b, beta in enumerate(betas):
            if prior == "one_hot":
                y = np.zeros((n, num_classes))
                y[:, k] = 1.0
            else:
                dist = tfp.distributions.Dirichlet(tf.constant(beta * alpha[k] + eps, tf.float64))
                y = dist.sample(n, seed=tf.constant([seed, k * 1000 + b], tf.int32)).numpy()
                y = _repair(y, k)
            parts.append(y)
            classes.append(np.full(n, k, np.int32))
            beta_col.append(np.full(n, beta, np.float32))
    targets = np.concatenate(parts).astype(np.float32)
    targets /= targets.sum(axis=1, keepdims=True)
    return Targets(targets, np.concatenate(classes), np.concatenate(beta_col))


def whole_batches(targets, batch_size):
    """``targets`` cut to a multiple of ``batch_size``: crafting works in whole batches."""
    usable = len(targets) - len(targets) % batch_size
    if usable == len(targets):
        return targets
    logging.warning("dropping %d targets to fill whole crafting batches of %d",
                    len(targets) - usable, batch_size)
    return Targets(targets.targets[:usable], targets.classes[:usable],
                   targets.betas[:usable])


def expected_class_share(concentration, betas=paper.BETAS, prior="class_similarity",
                         eps=paper.DIRICHLET_EPS):
    """(K,) expected share of all target mass that falls on each class, over a transfer
    set split equally between classes and betas: the mean over (k, beta) of the
    Dirichlet mean (beta * alpha^k + eps) / sum(beta * alpha^k + eps). Sums to 1."""
    alpha, betas = _checked(concentration, betas, prior)
    if prior == "one_hot":
        return np.full(alpha.shape[0], 1.0 / alpha.shape[0])
    means = [(b * alpha + eps) / (b * alpha + eps).sum(axis=1, keepdims=True) for b in betas]
    return np.mean([m.mean(axis=0) for m in means], axis=0)


def _checked(concentration, betas, prior):
    """(alpha the prior samples from, betas as floats), or ValueError for bad arguments."""
    alpha = np.asarray(concentration, np.float64)
    if alpha.ndim != 2 or alpha.shape[0] != alpha.shape[1]:
        raise ValueError(f"concentration must be a (K, K) matrix, got shape {alpha.shape}")
    if prior not in PRIORS:
        raise ValueError(f"prior must be one of {PRIORS}, got {prior!r}")
    betas = [float(b) for b in betas]
    if not betas or any(not np.isfinite(b) or b <= 0 for b in betas):
        raise ValueError(f"betas must be a non-empty list of numbers > 0, got {betas}")
    return (np.ones_like(alpha) if prior == "uniform" else alpha), betas


def _repair(y, k):
    """Rows that underflowed to all zeros (tiny concentrations) fall back to one-hot k."""
    bad = ~np.isfinite(y).all(axis=1) | (y.sum(axis=1) <= 0)
    if bad.any():
        y = y.copy()
        y[bad] = 0.0
        y[bad, k] = 1.0
    return y

"""Figures (matplotlib, headless) and markdown tables for runs and results.

TensorFlow is imported only by the functions that write to TensorBoard."""
import io
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from zskd_tf import store  # noqa: E402


def figure_to_image(fig):
    """A matplotlib figure as a (1, H, W, 4) uint8 tensor for ``tf.summary.image``."""
    import tensorflow as tf
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return tf.image.decode_png(buf.getvalue(), channels=4)[None]


def similarity_figure(sim, class_names=None):
    """Heat map of the class-similarity matrix (the paper's Figure 1)."""
    fig, ax = plt.subplots(figsize=(5.5, 4.8))
    _similarity_axes(fig, ax, sim, class_names,
                     "Class similarity (cosine of final-layer columns)")
    fig.tight_layout()
    return fig


def _similarity_axes(fig, ax, sim, class_names, title):
    k = sim.shape[0]
    names = class_names or [str(i) for i in range(k)]
    im = ax.imshow(sim, cmap="viridis")
    ax.set_xticks(range(k), names, rotation=90)
    ax.set_yticks(range(k), names)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, f"{sim[i, j]:.2f}", ha="center", va="center", fontsize=6,
                    color="w" if sim[i, j] < 0.5 else "k")
    fig.colorbar(im, ax=ax)
    ax.set_title(title, fontsize=9)


def similarity_panels_figure(panels, title=None):
    """One class-similarity heat map per panel: ``panels`` is a list of (title, matrix or
    None, class names); a None matrix draws the panel's title and "missing"."""
    width = 5.8 * len(panels)
    fig, axes = plt.subplots(1, len(panels), figsize=(width, 6.2), squeeze=False,
                             layout="constrained")
    for ax, (panel_title, sim, names) in zip(axes[0], panels):
        if sim is None:
            _missing_axes(ax, panel_title)
        else:
            _similarity_axes(fig, ax, np.asarray(sim), list(names), panel_title)
    if title:
        _suptitle(fig, title, width)
    return fig


def _suptitle(fig, title, width_inches, fontsize=10):
    """A figure title wrapped to the figure's width."""
    import textwrap
    chars = max(30, int(width_inches * 130 / fontsize))
    fig.suptitle("\n".join(textwrap.fill(line, chars) for line in title.split("\n")),
                 fontsize=fontsize)


def _missing_axes(ax, title, text="missing"):
    ax.set_title(title, fontsize=9)
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, wrap=True)
    ax.axis("off")


def craft_summaries(writer, sim):
    """Writes the class-similarity image to ``writer``; returns an ``on_shard`` callback
    that logs each crafted shard's mean loss and rate there."""
    import tensorflow as tf
    with writer.as_default(step=0):
        tf.summary.image("class_similarity", figure_to_image(similarity_figure(sim)))

    def on_shard(i, crafted, record):
        with writer.as_default(step=i):
            tf.summary.scalar("craft/mean_loss", record["mean_loss"])
            tf.summary.scalar("craft/image_steps_per_second", record["image_steps_per_second"])

    return on_shard


def pick_per_class(classes, per_class):
    """Indices of ``per_class`` impressions of each class, spread over its range (so both
    betas of Algorithm 1's class-major, beta-minor order appear)."""
    picks = []
    for c in np.unique(classes):
        idx = np.flatnonzero(classes == c)
        picks.append(idx[np.linspace(0, len(idx) - 1, min(per_class, len(idx))).astype(int)])
    return np.concatenate(picks)


def impression_grid_figure(images, targets, classes, class_names=None, fig=None):
    """One column per class (named below it: the class whose Dirichlet prior drew the
    targets), each impression titled with its target's top-2 confidences (the paper's
    Figure 4). ``fig``: draw into this figure or subfigure instead of a new one."""
    k = targets.shape[1]
    names = class_names or [str(i) for i in range(k)]
    per_class = max(int((classes == c).sum()) for c in range(k))
    new = fig is None
    if new:
        fig = plt.figure(figsize=(1.3 * k, 1.55 * per_class))
    axes = fig.subplots(per_class, k, squeeze=False)
    for c in range(k):
        for r, i in enumerate(np.flatnonzero(classes == c)):
            ax = axes[r, c]
            img = images[i]
            ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray",
                      vmin=0, vmax=1)
            top = np.argsort(targets[i])[::-1][:2]
            ax.set_title(f"{names[top[0]]}:{targets[i, top[0]]:.2f}\n"
                         f"{names[top[1]]}:{targets[i, top[1]]:.2f}", fontsize=7)
    for ax in axes.ravel():
        ax.axis("off")
    for c in range(k):
        axes[-1, c].text(0.5, -0.06, names[c], transform=axes[-1, c].transAxes,
                         ha="center", va="top", fontsize=8, fontweight="bold")
    if new:
        fig.tight_layout()
    return fig


def impression_picks(transfer_dir, per_class=3):
    """(images, targets, classes, indices) of ``per_class`` impressions of each class of
    a finished transfer set (``pick_per_class``)."""
    picks = set(pick_per_class(np.load(os.path.join(transfer_dir, "targets.npz"))["classes"],
                               per_class).tolist())
    images, targets, classes, index = [], [], [], []
    for shard in store.iter_shards(transfer_dir, keys=("images", "targets", "classes",
                                                         "index")):
        keep = np.isin(shard["index"], list(picks))
        images.append(shard["images"][keep])
        targets.append(shard["targets"][keep])
        classes.append(shard["classes"][keep])
        index.append(shard["index"][keep])
    return tuple(np.concatenate(a) for a in (images, targets, classes, index))


def save_impression_grid(transfer_dir, path, tb_writer=None, per_class=3, class_names=None):
    """Writes a grid of a finished transfer set's impressions as PNG (and to TensorBoard)."""
    images, targets, classes, _ = impression_picks(transfer_dir, per_class)
    fig = impression_grid_figure(images, targets, classes, class_names)
    fig.savefig(path, dpi=100)
    if tb_writer is not None:
        import tensorflow as tf
        with tb_writer.as_default(step=0):
            tf.summary.image("impressions_per_class", figure_to_image(fig))
    else:
        plt.close(fig)
    return path


def impression_panels_figure(panels, title=None):
    """``impression_grid_figure`` per panel, stacked: ``panels`` is a list of (title,
    (images, targets, classes) or None, class names); None draws "missing"."""
    heights = [0.9 if grid is None else 1.55 * max(np.bincount(grid[2])) + 0.8
               for _, grid, _ in panels]
    fig = plt.figure(figsize=(13, sum(heights) + 1.2), layout="constrained")
    subfigs = np.atleast_1d(fig.subfigures(len(panels), 1, height_ratios=heights))
    for sub, (panel_title, grid, names) in zip(subfigs, panels):
        if grid is None:
            _missing_axes(sub.subplots(), panel_title)
            continue
        impression_grid_figure(*grid, class_names=list(names), fig=sub)
        sub.suptitle(panel_title, fontsize=10)
    if title:
        _suptitle(fig, title, 13)
    return fig


def sweep_figure(panels, title=None, xlabel="transfer-set size (% of the training set)"):
    """Test accuracy against transfer-set size, one panel per data set (the paper's
    Figures 2, 3). ``panels``: list of (title, series, references); series: (label, xs,
    ys) with None for a missing point; references: (label, x, y) drawn as stars."""
    width = max(7.0, 5.5 * len(panels))
    fig, axes = plt.subplots(1, len(panels), figsize=(width, 5.6), squeeze=False,
                             layout="constrained")
    for ax, (panel_title, series, references) in zip(axes[0], panels):
        ticks = set()
        for label, xs, ys in series:
            points = [(x, y) for x, y in zip(xs, ys) if y is not None]
            ticks.update(xs)
            if points:
                ax.plot(*zip(*points), "o-", label=label)
            else:
                ax.plot([], [], "o-", label=f"{label} (missing)")
        for label, x, y in references:
            ax.plot([x], [y], "*", markersize=12, color="gray", label=label)
            ticks.add(x)
        ax.set_xscale("log")
        ax.set_xticks(sorted(ticks), [f"{t:.3g}" for t in sorted(ticks)])
        ax.minorticks_off()
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test accuracy % (final epoch)")
        ax.set_title(panel_title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        _suptitle(fig, title, width)
    return fig


def layer_rows(model):
    """(layer name, Keras class, output shape without the batch axis, parameters) per
    layer of a built functional ``model`` (appendix Tables 4, 5)."""
    return [(layer.name, type(layer).__name__, tuple(layer.output.shape[1:]),
             layer.count_params()) for layer in model.layers]


def markdown_table(header, rows):
    """A GitHub markdown table; floats printed with two decimals."""
    def cell(v):
        if v is None:
            return "-"
        return f"{v:.2f}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def save_figure(fig, path):
    """Writes ``fig`` as PNG (creating the folder) and closes it."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def save_similarity_png(sim, path, class_names=None):
    return save_figure(similarity_figure(sim, class_names), path)


def read_accuracy_history(path):
    """(epochs, test accuracy %) of the evaluated epochs in a Keras ``CSVLogger`` file
    (epochs counted from 1; rows without ``val_accuracy`` are skipped)."""
    import csv
    epochs, accuracy = [], []
    with open(path) as f:
        for row in csv.DictReader(f):
            value = row.get("val_accuracy", "NA")
            if value not in ("", "NA"):
                epochs.append(int(row["epoch"]) + 1)
                accuracy.append(100.0 * float(value))
    return np.array(epochs), np.array(accuracy)


def accuracy_curves_figure(curves, references=(), title=None):
    """Test accuracy over epochs, one line per run.

    curves: (label, epochs, accuracy %, fine-tune epochs or None, fine-tune accuracy) per
    run, fine-tuning drawn dashed after the run's last epoch; references: (label, %) drawn
    as horizontal dotted lines (e.g. the paper's figures). More than ten runs take
    colours from tab20; runs of very different lengths (5x or more) get a log epoch axis.
    The legend sits below the axes.
    """
    colours = plt.get_cmap("tab20" if len(curves) > 10 else "tab10").colors
    fig, ax = plt.subplots(figsize=(8, 4.5 + 0.17 * len(curves)))
    ends = []
    for i, (label, epochs, acc, ft_epochs, ft_acc) in enumerate(curves):
        colour = colours[i % len(colours)]
        ax.plot(epochs, acc, label=label, color=colour)
        ends.append(epochs[-1] if len(epochs) else 1)
        if ft_epochs is not None and len(ft_epochs):
            ax.plot(np.asarray(ft_epochs) + epochs[-1], ft_acc, "--", color=colour)
            ends[-1] += ft_epochs[-1]
    log_x = len(ends) > 1 and max(ends) >= 5 * min(ends)
    if log_x:
        ax.set_xscale("log")
    for label, value in references:
        ax.axhline(value, color="gray", linestyle=":", linewidth=1)
        ax.annotate(label, (0, value), xycoords=("axes fraction", "data"), fontsize=7,
                    color="gray", va="bottom")
    ax.set_xlabel("epoch" + (" (log scale)" if log_x else "")
                  + " (dashed: augmented fine-tuning after it)")
    ax.set_ylabel("test accuracy % (monitoring; not used for selection)")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=1,
              frameon=False)
    fig.tight_layout()
    return fig


def class_histograms_figure(histograms):
    """Bars of the share of images per class, one panel per labelled histogram (e.g. a
    teacher's predicted classes on each arbitrary source)."""
    n = len(histograms)
    fig, axes = plt.subplots(n, 1, figsize=(6, 1.6 * n + 0.6), squeeze=False, sharex=True)
    for ax, (label, counts) in zip(axes[:, 0], histograms.items()):
        counts = np.asarray(counts, np.float64)
        ax.bar(range(len(counts)), 100.0 * counts / max(1.0, counts.sum()))
        ax.axhline(100.0 / len(counts), color="gray", linestyle=":", linewidth=1)
        ax.set_title(label, fontsize=8)
        ax.set_ylabel("% of pool", fontsize=7)
    axes[-1, 0].set_xlabel("teacher's predicted class (dotted: balanced share)")
    axes[-1, 0].set_xticks(range(len(counts)))
    fig.tight_layout()
    return fig

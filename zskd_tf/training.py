"""Resumable Keras training shared by every stage (teacher, student, distillation).

``fit`` wraps ``keras.Model.fit`` with what every run of this project wants: TensorBoard
logs, a per-epoch CSV log (every metric, test accuracy included), epoch wall times,
resume from the last finished epoch (``BackupAndRestore``: weights and optimiser state)
and a final ``.keras`` file written atomically. A stage whose final model already exists
is not retrained; one given more epochs than it ran continues from its last checkpoint.

A stage records the settings that produce it (``settings``, e.g. learning rate, data and
initial weights fingerprints) when it starts; a later run whose settings differ stops
with ``StageMismatch`` naming them instead of silently reusing the old stage
(``restart`` deletes a stage on purpose). Training stops with ``TrainingDiverged``, before
that epoch is checkpointed or logged, when the loss is not finite.

Under a several-host strategy every host trains, and only the chief writes into the
workdir: the others start from the chief's checkpoint and log (copied, so each host
resumes from the same state) and write their own checkpoint, CSV and TensorBoard logs
into a temporary directory deleted when ``fit`` returns.
"""
import contextlib
import os
import shutil
import tempfile
import time

import keras
import numpy as np

from zskd_tf import distribute
from zskd_tf import io_utils


class EpochTimer(keras.callbacks.Callback):
    """Records each epoch's wall time into the logs as ``epoch_seconds``."""

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["epoch_seconds"] = time.perf_counter() - self._start


class EpochSeeds(keras.callbacks.Callback):
    """Restarts every random stream of the model's layers (Keras ``SeedGenerator``s, e.g.
    Dropout's masks) at the start of each epoch from its seed and the epoch number alone.

    ``BackupAndRestore`` saves no generator state, so without this a resumed run would
    draw epoch 0's masks again; with it, a resumed run draws what an uninterrupted one
    would. Each epoch's stream has room for ``STRIDE`` draws before it meets the next."""
    STRIDE = 2 ** 20

    def on_epoch_begin(self, epoch, logs=None):
        for layer in self.model._flatten_layers(include_self=True, recursive=True):
            for generator in getattr(layer, "_seed_generators", ()):
                seed = generator.state.numpy()[0]
                generator.state.assign(np.array([seed, epoch * self.STRIDE],
                                                generator.state.dtype))


class StepDecay(keras.callbacks.Callback):
    """Sets the learning rate to ``lr * 0.1 ** (drops before or at this epoch)`` at the
    start of every epoch, from the epoch index alone, so a resumed run gets the rate an
    uninterrupted one would; records it in the logs as ``learning_rate``."""

    def __init__(self, lr, drops):
        super().__init__()
        self.lr = float(lr)
        self.drops = sorted(int(e) for e in drops)

    def rate(self, epoch):
        return self.lr * 0.1 ** sum(epoch >= e for e in self.drops)

    def on_epoch_begin(self, epoch, logs=None):
        self.model.optimizer.learning_rate.assign(self.rate(epoch))

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:  # the optimiser's own rate, not what it was told
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(
                self.model.optimizer.learning_rate))


class StageMismatch(ValueError):
    """A stage on disk was made with other settings than the ones given now."""


class TrainingDiverged(RuntimeError):
    """The training loss became NaN or infinite."""


class StopOnNonFinite(keras.callbacks.Callback):
    """Raises ``TrainingDiverged`` at the end of an epoch whose mean loss is not finite.

    It runs before the CSV log and the checkpoint, so neither records that epoch, and the
    last checkpoint stays the last good epoch."""

    def __init__(self, stage):
        super().__init__()
        self.stage = stage

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(float(loss)):
            raise TrainingDiverged(
                f"stage {self.stage}: the training loss is {float(loss)} at epoch "
                f"{epoch + 1}; nothing of that epoch was saved (the checkpoint holds epoch "
                f"{epoch}). Lower the learning rate and rerun.")


class HistoryCSV(keras.callbacks.Callback):
    """Per-epoch logs as CSV, rewritten atomically after every epoch.

    Unlike ``keras.callbacks.CSVLogger`` it keeps columns that first appear after epoch 1
    (``val_*`` with ``validation_freq`` > 1, e.g. the test accuracy of a distiller whose
    training batches carry no labels) and continues the same file, header once, when a
    run resumes.
    """

    def __init__(self, path):
        super().__init__()
        self.path = path
        self.rows = []

    def on_train_begin(self, logs=None):
        history = read_history(self.path)
        epochs = history.get("epoch", [])
        self.rows = [{k: v[i] for k, v in history.items() if v[i] == v[i]}
                     for i in range(len(epochs))]

    def on_epoch_end(self, epoch, logs=None):
        self.rows = [r for r in self.rows if r.get("epoch") != epoch]
        self.rows.append({"epoch": epoch, **{k: float(v) for k, v in (logs or {}).items()}})
        keys = sorted({k for r in self.rows for k in r} - {"epoch"})
        lines = [",".join(["epoch", *keys])]
        for r in sorted(self.rows, key=lambda r: r["epoch"]):
            lines.append(",".join([str(int(r["epoch"]))] + [
                repr(r[k]) if k in r else "NA" for k in keys]))
        io_utils.write_text(self.path, "\n".join(lines) + "\n")


def stage_paths(workdir, stage):
    return {
        "model": os.path.join(workdir, f"{stage}.keras"),
        "summary": os.path.join(workdir, f"{stage}_summary.json"),
        "settings": os.path.join(workdir, f"{stage}_settings.json"),
        "backup": os.path.join(workdir, "backup", stage),
        "csv": os.path.join(workdir, f"{stage}_history.csv"),
        "tb": os.path.join(workdir, "tb", stage),
    }


def restart(workdir, stage):
    """Deletes everything ``stage`` wrote in ``workdir``, so the next run redoes it."""
    for path in stage_paths(workdir, stage).values():
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)


def checkpoint_epoch(workdir, stage):
    """Epochs finished in the stage's last checkpoint (0 if there is none): where a
    resumed ``fit`` starts."""
    path = os.path.join(stage_paths(workdir, stage)["backup"], "training_metadata.json")
    return int(io_utils.read_json(path)["epoch"]) if os.path.exists(path) else 0


_REDO = "--restart_from={stage} (zskd.run(restart_from=...))"


def check_settings(workdir, stage, settings, epochs, write=True, redo=_REDO):
    """Records ``settings`` for ``stage`` (unless ``write`` is False) or, if a run recorded
    others, raises ``StageMismatch`` naming every difference. More epochs than a stage ran
    continue it; fewer than its checkpoint holds are a mismatch. ``redo``: how to redo
    the stage on purpose, for the message."""
    path = stage_paths(workdir, stage)["settings"]
    if os.path.exists(path):
        old = io_utils.read_json(path)
        diff = sorted(k for k in set(old) | set(settings) if old.get(k) != settings.get(k))
        done = checkpoint_epoch(workdir, stage)
        if epochs < done:
            diff.append(f"epochs ({epochs} asked, {done} already run)")
        if diff:
            raise StageMismatch(
                f"{workdir} holds stage {stage} made with other settings ({', '.join(diff)} "
                f"differ); use another workdir, or redo it on purpose with "
                f"{redo.format(stage=stage, workdir=workdir)}")
    if write:
        io_utils.write_json(path, settings)


def read_history(csv_path):
    """The CSV log as {column: [values per epoch]} (empty dict if there is none)."""
    if not os.path.exists(csv_path):
        return {}
    with open(csv_path) as f:
        rows = [line.rstrip("\n").split(",") for line in f if line.strip()]
    if len(rows) < 2:
        return {}
    header, body = rows[0], rows[1:]
    history = {}
    for i, key in enumerate(header):
        values = []
        for row in body:
            try:
                values.append(float(row[i]))
            except (ValueError, IndexError):
                values.append(float("nan"))
        history[key] = values
    return history


def max_monitored_accuracy(workdir, stage):
    """Best per-epoch test accuracy (%) logged as ``val_accuracy``, or None.

    This picks an epoch by looking at the test set; it is reported only beside the
    final-epoch figure, under a name that says so.
    """
    history = read_history(stage_paths(workdir, stage)["csv"])
    monitored = [v for v in history.get("val_accuracy", []) if v == v]
    return max(monitored) * 100.0 if monitored else None


def fit(model, train_data, *, epochs, workdir, stage, validation_data=None,
        validation_freq=1, steps_per_epoch=None, verbose="auto", extra_callbacks=(),
        export=None, monitors=(), settings=None, redo=_REDO):
    """Trains a compiled model, resuming an interrupted run; returns a summary dict.

    ``train_data``: a dataset, or a function of the first epoch to run returning the
    stream from that epoch on (so a resumed run sees the batches an uninterrupted one
    would). ``export`` is the model saved as ``WORKDIR/<stage>.keras`` at the end
    (default: the trained model itself; a distiller exports its student). ``monitors``
    are callbacks that add entries to the epoch logs; they run before the CSV and
    TensorBoard logs are written, so those record them. ``settings``: what produces this
    stage (checked by ``check_settings``; ``redo`` says how to redo it on purpose). The
    summary holds the epochs run, per-epoch wall times and the final logs. If the
    stage's final model exists already for as many epochs, ``export`` gets its weights
    and no training happens. Under a several-host strategy (the one ``model`` was built
    under) every host trains and the chief alone writes into ``workdir`` (the module's
    docstring).
    """
    paths = stage_paths(workdir, stage)
    export = model if export is None else export
    chief = distribute.is_chief(model.distribute_strategy)
    if settings is not None:
        check_settings(workdir, stage, settings, epochs, write=chief, redo=redo)
    if os.path.exists(paths["model"]) and os.path.exists(paths["summary"]):
        summary = io_utils.read_json(paths["summary"])
        if summary["epochs"] >= epochs or not os.path.isdir(paths["backup"]):
            saved = keras.models.load_model(paths["model"], compile=False)
            export.set_weights(saved.get_weights())
            summary["reused"] = True
            return summary
    distribute.fit_ready(model)
    with _written_paths(paths, stage, chief) as own:
        if callable(train_data):
            train_data = train_data(checkpoint_epoch(workdir, stage))
        # The CSV row is written before the checkpoint: a kill between them redoes an epoch
        # whose row is then replaced, never one whose row is missing.
        callbacks = [
            EpochSeeds(),
            EpochTimer(),
            *monitors,
            StopOnNonFinite(stage),
            HistoryCSV(own["csv"]),
            keras.callbacks.BackupAndRestore(own["backup"], delete_checkpoint=False),
            keras.callbacks.TensorBoard(own["tb"], histogram_freq=0, write_graph=False,
                                        profile_batch=0),
            *extra_callbacks,
        ]
        start = time.perf_counter()
        model.fit(train_data, epochs=epochs, validation_data=validation_data,
                  validation_freq=validation_freq, steps_per_epoch=steps_per_epoch,
                  callbacks=callbacks, verbose=verbose)
        history = read_history(own["csv"])
    epoch_seconds = [s for s in history.get("epoch_seconds", []) if np.isfinite(s)]
    summary = {
        "epochs": len(history.get("epoch", [])),
        "seconds_this_run": time.perf_counter() - start,
        "mean_epoch_seconds": float(np.mean(epoch_seconds)) if epoch_seconds else None,
        "final_logs": {k: v[-1] for k, v in history.items() if v},
        "history_csv": os.path.relpath(paths["csv"], workdir),
        "reused": False,
    }
    if chief:
        io_utils.save_model(export, paths["model"])
        io_utils.write_json(paths["summary"], summary)
    return summary


@contextlib.contextmanager
def _written_paths(paths, stage, chief):
    """Where this host writes a stage's checkpoint and logs: the workdir's ``paths`` on
    the chief; on another host of a several-host run, a temporary directory that starts
    with a copy of the chief's checkpoint and CSV log (so every host resumes from the
    same state; the chief writes neither before every host has run a step) and is
    deleted afterwards."""
    if chief:
        os.makedirs(paths["backup"], exist_ok=True)
        yield paths
        return
    scratch = tempfile.mkdtemp(prefix=f"zskd-{stage}-")
    try:
        own = stage_paths(scratch, stage)
        if os.path.isdir(paths["backup"]):
            shutil.copytree(paths["backup"], own["backup"])
        if os.path.exists(paths["csv"]):
            shutil.copyfile(paths["csv"], own["csv"])
        yield own
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

"""Resumable Keras training shared by every stage (teacher, student, distillation).

``fit`` wraps ``keras.Model.fit`` with what every run of this project wants: TensorBoard
logs, a per-epoch CSV log (every metric, test accuracy included), epoch wall times,
resume from the last finished epoch (``BackupAndRestore``) and a final ``.keras`` file
written atomically. A stage whose final model already exists is not retrained.
"""
import json
import os
import time

import keras
import numpy as np

from zskd_tf import io_utils


class EpochTimer(keras.callbacks.Callback):
    """Records each epoch's wall time into the logs as ``epoch_seconds``."""

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["epoch_seconds"] = time.perf_counter() - self._start


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
        "backup": os.path.join(workdir, "backup", stage),
        "csv": os.path.join(workdir, f"{stage}_history.csv"),
        "tb": os.path.join(workdir, "tb", stage),
    }


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
        export=None, monitors=()):
    """Trains a compiled model, resuming an interrupted run; returns a summary dict.

    ``export`` is the model saved as ``WORKDIR/<stage>.keras`` at the end (default: the
    trained model itself; a distiller exports its student). ``monitors`` are callbacks
    that add entries to the epoch logs; they run before the CSV and TensorBoard logs are
    written, so those record them. The summary holds the epochs
    run, per-epoch wall times and the final logs. If the stage's final model exists
    already, ``export`` gets its weights and no training happens.
    """
    paths = stage_paths(workdir, stage)
    export = model if export is None else export
    if os.path.exists(paths["model"]) and os.path.exists(paths["summary"]):
        saved = keras.models.load_model(paths["model"], compile=False)
        export.set_weights(saved.get_weights())
        with open(paths["summary"]) as f:
            summary = json.load(f)
        summary["reused"] = True
        return summary
    os.makedirs(paths["backup"], exist_ok=True)
    callbacks = [
        EpochTimer(),
        *monitors,
        keras.callbacks.BackupAndRestore(paths["backup"], delete_checkpoint=False),
        HistoryCSV(paths["csv"]),
        keras.callbacks.TensorBoard(paths["tb"], histogram_freq=0, write_graph=False,
                                    profile_batch=0),
        *extra_callbacks,
    ]
    start = time.perf_counter()
    model.fit(train_data, epochs=epochs, validation_data=validation_data,
              validation_freq=validation_freq, steps_per_epoch=steps_per_epoch,
              callbacks=callbacks, verbose=verbose)
    history = read_history(paths["csv"])
    epoch_seconds = [s for s in history.get("epoch_seconds", []) if np.isfinite(s)]
    summary = {
        "epochs": len(history.get("epoch", [])),
        "seconds_this_run": time.perf_counter() - start,
        "mean_epoch_seconds": float(np.mean(epoch_seconds)) if epoch_seconds else None,
        "final_logs": {k: v[-1] for k, v in history.items() if v},
        "history_csv": os.path.relpath(paths["csv"], workdir),
        "reused": False,
    }
    io_utils.save_model(export, paths["model"])
    io_utils.write_json(paths["summary"], summary)
    return summary

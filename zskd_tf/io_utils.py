"""Atomic writes: a kill or an error never leaves a half-written file under the final name."""
import json
import os
import tempfile


def _tmp_name(path, suffix=""):
    directory = os.path.dirname(os.path.abspath(path)) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=directory)
    os.close(fd)
    return tmp


def replace_atomically(path, write):
    """Calls ``write(tmp_path)`` then renames the temporary file to ``path``."""
    tmp = _tmp_name(path, suffix=os.path.splitext(path)[1])
    try:
        write(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(path, obj):
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True, default=_default)
            f.write("\n")
    replace_atomically(path, write)


def read_json(path):
    with open(path) as f:
        return json.load(f)


def save_model(model, path):
    """Saves architecture and weights only (no optimiser state), atomically."""
    import keras
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    replace_atomically(path, clone.save)


def _default(obj):
    try:
        import numpy as np
        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:
        pass
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_text(path, text):
    def write(tmp):
        with open(tmp, "w") as f:
            f.write(text)
    replace_atomically(path, write)

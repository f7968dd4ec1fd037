"""Atomic writes (a kill or an error never leaves a half-written file under the final
name), the one-run-per-workdir lock, and a cheap look at a Keras model file."""
import errno
import fcntl
import json
import os
import tempfile
import zipfile


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


LOCK_NAME = ".lock"
_HELD = {}  # real path of a workdir -> the open file holding its lock, for the process's life


class WorkdirBusy(RuntimeError):
    """Another process holds the workdir's lock."""


def lock_workdir(workdir, name=LOCK_NAME):
    """Takes an exclusive, non-blocking ``flock`` on ``workdir/name`` (creating the
    workdir) and holds it until this process exits: the OS releases it however the
    process ends, kill included. Raises WorkdirBusy naming the holder's pid if another
    process holds it. Once this process holds a lock on ``workdir``, further calls do
    nothing (so ``name`` matters only for the first)."""
    key = os.path.realpath(workdir)
    if key in _HELD:
        return
    os.makedirs(workdir, exist_ok=True)
    fd = os.open(os.path.join(workdir, name), os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise
        raise WorkdirBusy(f"workdir {workdir} is busy: another run (pid {holder}) "
                          "holds it") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _HELD[key] = fd


def keras_file_problem(path):
    """Why ``path`` is not a ``.keras`` model file Keras could load, in a few words; None
    when it looks like one (a zip archive with a JSON config.json, every member intact).
    Cheap: reads the file, imports no Keras. A legacy ``.h5``/``.hdf5`` file or a
    directory is left to Keras. Raises FileNotFoundError for a missing path."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no model file at {path}")
    if os.path.isdir(path) or path.endswith((".h5", ".hdf5")):
        return None
    if not zipfile.is_zipfile(path):
        return "not a zip archive (a .keras file is one), perhaps truncated"
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
            if bad is not None:
                return f"archive member {bad} is corrupt"
            if "config.json" not in archive.namelist():
                return "the archive has no config.json"
            json.loads(archive.read("config.json"))
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        return f"unreadable archive ({short_reason(e)})"
    if not path.endswith(".keras"):
        return "its name does not end in .keras (Keras reads a model archive only by that name)"
    return None


def short_reason(error, limit=200):
    """The first line of ``error``'s message, at most ``limit`` characters."""
    text = (str(error).strip().splitlines() or [type(error).__name__])[0]
    return text if len(text) <= limit else text[:limit - 3] + "..."

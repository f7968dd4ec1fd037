"""One ``--seed`` drives a run; each stage derives its own seed so no stream is reused."""
import zlib

import keras


def derive(seed, stage):
    """A stable 31-bit seed for ``stage`` (a string) derived from the run's seed."""
    return zlib.crc32(f"{int(seed)}/{stage}".encode()) & 0x7FFFFFFF


def seed_stage(seed, stage):
    """Seeds Python, NumPy and TensorFlow for a stage; returns the derived seed."""
    s = derive(seed, stage)
    keras.utils.set_random_seed(s)
    return s

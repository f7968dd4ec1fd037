"""What this host's CPU offers, read from /proc/cpuinfo (no TensorFlow import)."""
import functools

VECTOR_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16")


@functools.lru_cache(maxsize=None)
def cpu_flags(path="/proc/cpuinfo"):
    """The CPU's feature flags (empty where /proc/cpuinfo is not available)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def native_bf16():
    """True when the CPU computes bfloat16 products natively (AVX512-BF16 or AMX)."""
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def vector_flags():
    """The flags among VECTOR_FLAGS this CPU has, in that order."""
    return [f for f in VECTOR_FLAGS if f in cpu_flags()]

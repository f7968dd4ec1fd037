from zskd_tf import hardware


def test_flags_are_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 fma avx512f avx512_bf16\n")
    flags = hardware.cpu_flags(str(info))
    assert {"avx2", "avx512_bf16"} <= flags and "amx_bf16" not in flags
    assert hardware.cpu_flags(str(tmp_path / "missing")) == frozenset()


def test_native_bf16_follows_the_flags(monkeypatch):
    for flags, expected in [({"avx2"}, False), ({"avx512_bf16"}, True), ({"amx_bf16"}, True)]:
        monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset(flags))
        assert hardware.native_bf16() is expected
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset({"fma", "avx2", "sse2"}))
    assert hardware.vector_flags() == ["avx2", "fma"]

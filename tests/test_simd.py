"""SIMD levels: one kernel module per level, the best the CPU runs chosen at import, DWCY_SIMD forcing one.

The kernel tests themselves run at every level (the simd_level fixture, conftest.py). Here: each module is
built for its level, the choice and its errors, and results that agree across levels within rounding (bitwise
agreement is promised across thread counts, not across levels: FMA and tile sizes change the rounding).
"""

import os
import platform
import shlex
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest

import dwcy
import dwcy.kernels
from dwcy import reference
from _helpers import (DTYPES, assert_within_rounding, depthwise_inputs, depthwise_terms, dtype_id, pointwise_inputs,
                      reference_magnitude, separable_inputs, separable_terms)

LEVELS = dwcy.kernels.LEVELS
USABLE = dwcy.kernels.usable
X86_64 = platform.machine().lower() in ("x86_64", "amd64", "x64")

# The level name the tile table of microkernels.h reports for each module (the baseline: SSE2 on x86-64).
TILE_LEVEL = {"baseline": ("sse2", "generic"), "avx2": ("avx2",), "avx512": ("avx512",)}


def run_python(code, simd=None, timeout=120):
    """Run ``code`` in a child Python with DWCY_SIMD=simd (None: unset), from a neutral directory."""
    env = {key: value for key, value in os.environ.items() if key != "DWCY_SIMD"}
    if simd is not None:
        env["DWCY_SIMD"] = simd
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=tempfile.gettempdir())


def test_every_level_is_built_on_x86_64():
    # Fails when a build silently lost a level (the compiler refused its flags), as the OpenMP test does.
    if not X86_64:
        pytest.skip("only the baseline exists off x86-64")
    assert dwcy.kernels.built == LEVELS


def test_baseline_is_always_usable_and_levels_are_ordered():
    assert USABLE[0] == "baseline"
    assert list(USABLE) == [level for level in LEVELS if level in USABLE]
    assert all(dwcy.kernels.cpu_supports(level) for level in USABLE)


@pytest.mark.parametrize("level", USABLE)
def test_each_module_is_compiled_for_its_level(level):
    info = dwcy.kernels.load(level).build_info()
    assert info["simd_level"] in TILE_LEVEL[level], info
    if level == "avx2":
        assert "-mavx2" in info["flags"] or "/arch:AVX2" in info["flags"], info
    if level == "avx512":
        assert "-mavx512f" in info["flags"] or "/arch:AVX512" in info["flags"], info


@pytest.mark.parametrize("level", USABLE)
def test_the_plain_c_tiles_compile_with_each_level_flags(tmp_path, level):
    # The tiles' plain-C version, what a compiler without vector extensions (MSVC) builds, is otherwise compiled
    # only by DWCY_PLAIN_C=1 builds: the AVX-512 row of the tile table once asked it for tiles that exist only as
    # vector code. Its sums are checked by running the suite against such a build (README, "Developing").
    flags = dwcy.kernels.load(level).build_info()["flags"].split()
    if any(flag.startswith("/") for flag in flags):
        pytest.skip("built by MSVC, which compiles the plain-C tiles anyway")
    source = tmp_path / "plain.c"
    source.write_text('#include "microkernels.h"\n')
    headers = Path(dwcy.kernels.__file__).parent / "_kernels"  # installed with the package (pyproject.toml)
    command = shlex.split(sysconfig.get_config_var("CC") or "cc") + flags + [
        "-DDWCY_NO_VECTOR_EXTENSIONS", "-Wall", "-Werror", "-fsyntax-only", "-I", str(headers), str(source)]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        pytest.skip(f"no C compiler ({command[0]})")
    assert result.returncode == 0, result.stderr


def test_the_best_usable_level_is_the_default():
    child = run_python("import dwcy; print(dwcy.config()['simd_level'])")
    assert child.returncode == 0, child.stderr
    assert child.stdout.split() == [USABLE[-1]]
    if not os.environ.get("DWCY_SIMD"):
        assert dwcy.kernels.level == USABLE[-1]
        assert dwcy.config()["simd_level"] == USABLE[-1]


def test_config_and_show_config_name_the_levels(capsys):
    config = dwcy.config()
    assert config["simd_level"] == dwcy.kernels.level
    assert config["simd_levels"] == list(USABLE)
    assert config["simd_levels_built"] == list(dwcy.kernels.built)
    dwcy.show_config()
    line = next(line for line in capsys.readouterr().out.splitlines() if "SIMD level" in line)
    assert dwcy.kernels.level in line and "DWCY_SIMD" in line and ", ".join(USABLE) in line


@pytest.mark.parametrize("level", USABLE)
def test_DWCY_SIMD_forces_the_level_of_the_python_api(rng, monkeypatch, tmp_path, level):
    # The child's result must be the bits of this level's kernels, run here.
    x, weight, bias = depthwise_inputs(rng, np.float32, n=1, h=9, w=27, c=37, kh=3)
    kwargs = dict(padding="same", activation="relu6")
    expected = _at_every_level(dwcy.depthwise_conv2d, monkeypatch, x, weight, bias, **kwargs)[level]
    np.savez(tmp_path / "call.npz", x=x, weight=weight, bias=bias)
    child = run_python(f"""
        import numpy as np, dwcy
        call = np.load({str(tmp_path / "call.npz")!r})
        y = dwcy.depthwise_conv2d(call["x"], call["weight"], call["bias"], **{kwargs!r})
        np.save({str(tmp_path / "y.npy")!r}, y)
        dwcy.show_config()
    """, simd=f" {level.upper()} ")  # case and surrounding blanks do not matter
    assert child.returncode == 0, child.stderr
    assert f"SIMD level:  {level} " in child.stdout
    assert np.load(tmp_path / "y.npy").tobytes() == expected.tobytes(), f"DWCY_SIMD={level}: not {level}'s result"


@pytest.mark.parametrize("value, message", [
    ("avx1024", "DWCY_SIMD=avx1024: unknown SIMD level 'avx1024': expected one of baseline, avx2, avx512"),
    ("sse2", "DWCY_SIMD=sse2: unknown SIMD level 'sse2'"),
])
def test_DWCY_SIMD_refuses_an_unknown_level(value, message):
    child = run_python("import dwcy", simd=value)
    assert child.returncode != 0
    assert "RuntimeError: " + message in child.stderr, child.stderr


def test_choose_explains_what_is_missing():
    built, usable = ("baseline", "avx2", "avx512"), ("baseline", "avx2")
    assert dwcy.kernels.choose("", built, usable) == "avx2"
    assert dwcy.kernels.choose("baseline", built, usable) == "baseline"
    with pytest.raises(RuntimeError, match=r"^DWCY_SIMD=avx512: this CPU does not support avx512 \(AVX-512 F, BW, "
                                           r"DQ and VL, AVX2 and FMA\); it runs baseline, avx2$"):
        dwcy.kernels.choose("avx512", built, usable)
    with pytest.raises(RuntimeError, match=r"^DWCY_SIMD=avx2: this dwcy was built without the avx2 kernels .*; "
                                           r"it has baseline$"):
        dwcy.kernels.choose("avx2", ("baseline",), ("baseline",))
    with pytest.raises(ImportError, match="no kernel module"):
        dwcy.kernels.choose("", (), ())


def test_load_refuses_what_this_cpu_cannot_run():
    with pytest.raises(RuntimeError, match="unknown SIMD level 'native'"):
        dwcy.kernels.load("native")
    for level in set(LEVELS) - set(USABLE):
        with pytest.raises(RuntimeError, match=level):
            dwcy.kernels.load(level)


# ------------------------------------------------------------------------------------ across levels


def _at_every_level(function, monkeypatch, *args, **kwargs):
    """{level: function(*args, **kwargs) computed with that level's kernels}."""
    results = {}
    for level in USABLE:
        monkeypatch.setattr(dwcy._api, "_kernels", dwcy.kernels.load(level))
        results[level] = function(*args, **kwargs)
    monkeypatch.undo()
    return results


def _assert_levels_agree(results, reference_fn, args, kwargs, terms):
    """Every level's result within rounding of the best level's (each is within it of the exact result)."""
    best = results[USABLE[-1]].astype(np.float64)
    magnitude = reference_magnitude(reference_fn, *args, **kwargs)
    for level, result in results.items():
        try:
            assert_within_rounding(result, best, magnitude, terms, result.dtype)
        except AssertionError as error:
            raise AssertionError(f"{level} against {USABLE[-1]}: {error}") from None


DEPTHWISE_CASES = {  # x shape (N, H, W, C), kernel, multiplier, keyword arguments: the tiles of every level
    "3x3_same": ((2, 13, 37, 37), 3, 1, dict(padding="same", activation="relu6")),
    "5x5_stride2_dilated": ((1, 17, 29, 19), 5, 2, dict(padding="same", stride=2, dilation=(1, 2))),
    "7x7_hardswish": ((1, 11, 41, 70), 7, 1, dict(padding=((3, 2), (1, 3)), activation="hardswish")),
}


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("name", DEPTHWISE_CASES)
def test_depthwise_levels_agree(rng, monkeypatch, name, dtype):
    (n, h, w, c), k, multiplier, kwargs = DEPTHWISE_CASES[name]
    x, weight, bias = depthwise_inputs(rng, dtype, n=n, h=h, w=w, c=c, kh=k, multiplier=multiplier)
    results = _at_every_level(dwcy.depthwise_conv2d, monkeypatch, x, weight, bias, **kwargs)
    _assert_levels_agree(results, reference.depthwise_conv2d, (x, weight, bias), kwargs, depthwise_terms(weight))


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("cin, cout", [(19, 37), (96, 24), (330, 70)])
def test_pointwise_levels_agree(rng, monkeypatch, cin, cout, dtype):
    x, weight, bias = pointwise_inputs(rng, dtype, n=2, h=9, w=13, cin=cin, cout=cout, scale=3.0)
    kwargs = dict(activation="hardswish")
    results = _at_every_level(dwcy.pointwise_conv2d, monkeypatch, x, weight, bias, **kwargs)
    _assert_levels_agree(results, reference.pointwise_conv2d, (x, weight, bias), kwargs, cin)


@pytest.mark.parametrize("dtype", DTYPES, ids=dtype_id)
@pytest.mark.parametrize("stride", [1, 2])
def test_separable_levels_agree(rng, monkeypatch, stride, dtype):
    arrays = separable_inputs(rng, dtype, n=2, h=23, w=31, c=40, multiplier=2, cout=45)
    kwargs = dict(stride=stride, padding="same", depthwise_activation="relu6", activation="relu")
    results = _at_every_level(dwcy.separable_conv2d, monkeypatch, **arrays, **kwargs)
    terms = separable_terms(arrays["depthwise_weight"], arrays["pointwise_weight"])
    _assert_levels_agree(results, reference.separable_conv2d, (), {**arrays, **kwargs}, terms)

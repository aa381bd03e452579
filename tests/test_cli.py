"""The command line, python -m dwcy: the benchmark table with --json and --plot, the profile, info, bad options,
and the plain fallbacks without the cli extra (tqdm, matplotlib) or a peer.

Child interpreters run in a temporary directory; one runs in a copy of an unbuilt source tree, as the README's
``pip install ".[cli]" && python -m dwcy`` does in a fresh checkout. The in-process tests shorten the untimed
settling time so they take a second or two.
"""

import importlib.util
import json
import os
import subprocess
import sys

import pytest

import dwcy
import dwcy.__main__ as cli
from dwcy._layers import BENCHMARK_LAYERS

HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


def run_dwcy(*arguments, cwd, timeout=240):
    return subprocess.run([sys.executable, "-m", "dwcy", *arguments], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout, env={**os.environ, "PYTHONWARNINGS": "ignore"})


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """``python -m dwcy --quick --json out.json`` (and ``--plot out.png`` where matplotlib is installed), once: the
    command a new user runs, with every section (~25 s on 2 cores)."""
    directory = tmp_path_factory.mktemp("cli")
    arguments = ["--quick", "--json", "out.json"] + (["--plot", "out.png"] if HAS_MATPLOTLIB else [])
    return run_dwcy(*arguments, cwd=directory), directory


def test_quick_json(quick_run):
    result, directory = quick_run
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    document = json.loads((directory / "out.json").read_text())
    assert document["command"] == "bench" and document["settings"]["batch"] == 1 and document["settings"]["quick"]
    expected = [(key, layer.name) for key in ("depthwise", "pointwise", "separable")
                for layer in BENCHMARK_LAYERS[key]] + [("network", "MobileNetV2 224x224")]
    assert [(record["section"], record["layer"]) for record in document["layers"]] == expected
    for record in document["layers"]:
        assert record["seconds"]["dwcy"] > 0 and record["seconds"]["reference"] > 0, record
        assert all(t is None or t > 0 for t in record["seconds"].values()), record  # None: a peer that failed
        assert record["correct"]["dwcy"] and record["correct"]["reference"], record
        assert record["flops"] > 0 and record["speedups"]["reference"] > 0
    for section in ("## depthwise layers", "## pointwise layers", "## separable blocks", "## whole network",
                    "MobileNetV2 224x224", "geometric mean speedup"):
        assert section in result.stdout


@pytest.mark.skipif(not HAS_MATPLOTLIB, reason="matplotlib is not installed (the cli extra): --plot is not drawn")
def test_quick_plot(quick_run):
    result, directory = quick_run
    assert result.returncode == 0, result.stderr
    assert (directory / "out.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "plot written to out.png" in result.stdout


def test_info(tmp_path):
    result = run_dwcy("info", cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "SIMD level" in result.stdout and "OpenMP" in result.stdout


def test_bad_option_exits_2_without_traceback(tmp_path):
    result = run_dwcy("--batch", "0", cwd=tmp_path, timeout=60)
    assert result.returncode == 2
    assert "usage: python -m dwcy bench" in result.stderr and "error: argument --batch" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


@pytest.mark.parametrize("arguments, message", [
    (["--batch", "x"], "--batch: expected a whole number"),
    (["--threads", "0"], "--threads: must be >= 1"),
    (["--dtype", "int8"], "--dtype: invalid choice"),
    (["--compare", "tensorflow"], "unknown peer 'tensorflow'"),
    (["--only", "everything"], "unknown section 'everything'"),
    (["--quick", "--bogus"], "unrecognized arguments: --bogus"),
    (["benchmark"], "invalid choice: 'benchmark'"),
    (["profile", "--plot", "x.png"], "unrecognized arguments: --plot"),
])
def test_bad_options(capsys, arguments, message):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(arguments)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_help_explains_every_option(capsys):
    for command in (["--help"], ["bench", "--help"], ["profile", "--help"]):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(command)
        assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in ("bench", "profile", "info", "--batch", "--threads", "--dtype", "--quick", "--json", "--plot",
                   "--compare", "--only", 'pip install "dwcy[cli]"'):
        assert option in text, option


@pytest.fixture
def fast(monkeypatch):
    """No settling between timed blocks: an in-process run takes a second or two (timings meaningless; one thread,
    which a busy neighbour on a shared machine slows least)."""
    monkeypatch.setattr(cli, "SETTLE", 0.0)


def block(monkeypatch, *modules):
    """Make ``modules`` fail to import, as if not installed."""
    for module in modules:
        monkeypatch.setitem(sys.modules, module, None)


def test_without_cli_extra(fast, monkeypatch, capsys, tmp_path):
    block(monkeypatch, "tqdm", "matplotlib")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--quick", "--plot", str(tmp_path / "x.png")])
    assert exit_info.value.code == 2
    assert 'matplotlib, which is not installed: pip install "dwcy[cli]"' in capsys.readouterr().err
    assert cli.main(["--quick", "--only", "network", "--compare", "none", "--threads", "1"]) == 0
    captured = capsys.readouterr()
    assert "bench [1/1] network MobileNetV2 224x224" in captured.err  # plain progress lines instead of a bar
    assert "| MobileNetV2 224x224 |" in captured.out


def test_missing_peer_named_in_one_line(fast, monkeypatch, capsys):
    block(monkeypatch, "torch", "onnx")
    assert cli.main(["--quick", "--only", "network", "--compare", "torch,onnxruntime", "--threads", "1"]) == 0
    err = capsys.readouterr().err
    assert "dwcy: --compare: torch is not installed (pip install torch); going on without it" in err
    assert "onnxruntime" in err and "pip install onnx" in err  # onnxruntime needs onnx to build its models


def test_profile(fast, capsys, tmp_path):
    path = tmp_path / "profile.json"
    assert cli.main(["profile", "--quick", "--compare", "none", "--threads", "1", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "| features.0 " in out and "| classifier " in out and "| whole network " in out
    document = json.loads(path.read_text())
    assert [stage["stage"] for stage in document["stages"]] == [f"features.{i}" for i in range(19)] + ["classifier"]
    for stage in document["stages"]:
        assert stage["seconds"]["dwcy"] > 0 and stage["seconds"]["reference"] > 0
        assert stage["correct"] == {"dwcy": True, "reference": True}
    assert document["network"]["seconds"]["dwcy"] > 0


def test_runs_from_an_unbuilt_source_tree(tmp_path):
    # The checkout's dwcy/ comes first on sys.path there, without its compiled kernels: it hands over to the
    # installed package (dwcy/__init__.py), whose __main__ then runs.
    installed = os.path.dirname(dwcy.__file__)
    (tmp_path / "dwcy").mkdir()
    for name in os.listdir(installed):
        if name.endswith(".py"):
            (tmp_path / "dwcy" / name).write_bytes(open(os.path.join(installed, name), "rb").read())
    result = run_dwcy("--help", cwd=tmp_path, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "usage" in result.stdout
    where = subprocess.run([sys.executable, "-c", "import dwcy; print(dwcy.__file__)"], capture_output=True,
                           text=True, cwd=tmp_path, timeout=60)
    assert where.stdout.strip() == dwcy.__file__, where.stderr

"""The command line: ``python -m dwcy [bench] [options]`` and ``python -m dwcy info``.

``bench`` (the default) times dwcy against the NumPy reference on MobileNetV2's depthwise layers and prints a
table; ``info`` prints the build and runtime configuration. The pytest-benchmark suite in ``benchmarks/``
measures more (batch 8, thread counts) and saves results; this is the quick look.
"""

import argparse
import statistics
import sys
import time
from typing import NamedTuple

import numpy as np

import dwcy
from dwcy import reference
from dwcy._layers import MOBILENET_V2_DEPTHWISE


class Timing(NamedTuple):
    """How long to time one case: at least ``min_time`` seconds in all and ``min_rounds`` calls of each function."""

    min_time: float
    min_rounds: int


FULL = Timing(min_time=0.5, min_rounds=5)
QUICK = Timing(min_time=0.05, min_rounds=3)


def time_interleaved(functions, timing):
    """Median seconds of one call of each of ``functions`` (no arguments), timed in alternation.

    Each round calls every function once, so the noise of a shared machine (a busy neighbour, a clock change)
    hits them all alike and their ratio holds when absolute times drift. The median ignores the rounds a
    neighbour spoiled. A first call of each, untimed, pays the one-off costs: OpenMP starting its threads,
    page faults on fresh buffers.
    """
    for function in functions:
        function()
    samples = [[] for _ in functions]
    started = time.perf_counter()
    while len(samples[0]) < timing.min_rounds or time.perf_counter() - started < timing.min_time:
        for function, times in zip(functions, samples):
            begin = time.perf_counter()
            function()
            times.append(time.perf_counter() - begin)
    return [statistics.median(times) for times in samples]


class Row(NamedTuple):
    layer: object
    batch: int
    dwcy_s: float
    reference_s: float
    max_error: float  # from excess_error(): 0.0 when dwcy agrees with the float64 reference

    @property
    def speedup(self):
        return self.reference_s / self.dwcy_s

    def cells(self):
        check = "ok" if self.max_error == 0 else f"WRONG (off by {self.max_error:.3g})"
        return [self.layer.name, self.layer.shape_str(self.batch), f"{self.dwcy_s * 1e3:.3f}",
                f"{self.reference_s * 1e3:.3f}", f"{self.speedup:.1f}x", check]


HEADER = ["layer", "shape (NHWC)", "dwcy ms", "reference ms", "speedup", "check"]
RIGHT_ALIGNED = [False, False, True, True, True, False]


def excess_error(result, expected, tolerance):
    """The largest error beyond ``tolerance`` (np.allclose's rule): 0.0 when every element is within it, NaN if
    some result is NaN where the reference is not, inf if the shapes differ."""
    if result.shape != expected.shape:
        return float("inf")
    error = np.abs(result - expected)
    bad = ~(error <= tolerance["atol"] + tolerance["rtol"] * np.abs(expected))  # ~(<=): NaN counts as bad
    return float(error[bad].max()) if bad.any() else 0.0


def bench_layer(layer, batch, dtype, threads, timing):
    """Check dwcy against the float64 reference once, then time it and the NumPy reference on ``layer``."""
    x, weight, bias = inputs = layer.make_inputs(batch, dtype)

    def run_dwcy():
        return dwcy.depthwise_conv2d(x, weight, bias, num_threads=threads, **layer.keywords)

    def run_reference():
        return reference.depthwise_conv2d(x, weight, bias, **layer.keywords)

    max_error = excess_error(run_dwcy(), layer.expected(inputs), layer.tolerance(dtype))
    dwcy_s, reference_s = time_interleaved([run_dwcy, run_reference], timing)
    return Row(layer, batch, dwcy_s, reference_s, max_error)


def format_table(header, rows, right_aligned):
    """A plain-text table with aligned columns, in Markdown's pipe syntax (it renders as a table there too)."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]

    def line(cells):
        padded = (cell.rjust(w) if right else cell.ljust(w) for cell, w, right in zip(cells, widths, right_aligned))
        return "| " + " | ".join(padded) + " |"

    rule = ["-" * (w - 1) + ":" if right else "-" * w for w, right in zip(widths, right_aligned)]
    return "\n".join([line(header), line(rule)] + [line(row) for row in rows])


def describe_run(args):
    """The lines above the table: what is compared, on which build, with which settings."""
    config = dwcy.config()
    threads = f"{args.threads}" if args.threads is not None else f"{config['threads']} (OpenMP's default)"
    return (
        f"dwcy {config['version']} ({config['simd_level']}) vs dwcy.reference (NumPy, one thread): "
        f"MobileNetV2's depthwise 3x3 'same' layers + bias + relu6\n"
        f"batch {args.batch}, {args.dtype}, dwcy threads {threads}; "
        f"median of interleaved calls{', --quick' if args.quick else ''}"
    )


def run_bench(args):
    timing = QUICK if args.quick else FULL
    dtype = np.dtype(args.dtype)
    print(describe_run(args), flush=True)
    rows = [bench_layer(layer, args.batch, dtype, args.threads, timing) for layer in MOBILENET_V2_DEPTHWISE]
    print()
    print(format_table(HEADER, [row.cells() for row in rows], RIGHT_ALIGNED))
    print()
    print(f"geometric mean speedup: {statistics.geometric_mean(row.speedup for row in rows):.1f}x")
    wrong = [row.layer.name for row in rows if row.max_error != 0]
    if wrong:
        print(f"WRONG: dwcy disagrees with the float64 reference on {len(wrong)} layer(s): {', '.join(wrong)}")
        return 1
    return 0


def run_info(args):  # every command takes the parsed arguments
    dwcy.show_config()
    return 0


def positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def add_bench_parser(commands):
    bench = commands.add_parser(
        "bench", help="time dwcy against the NumPy reference on MobileNetV2's depthwise layers (the default)",
        description="Time dwcy.depthwise_conv2d against dwcy.reference.depthwise_conv2d on the 10 depthwise layers "
                    "of MobileNetV2 (224x224), check dwcy's results, and print a table with the speedups and "
                    "their geometric mean. Exits with status 1 if a result is wrong.")
    bench.add_argument("--batch", type=positive_int, default=1, metavar="N", help="images per call (default: 1)")
    bench.add_argument("--threads", type=positive_int, default=None, metavar="N",
                       help="dwcy's num_threads (default: OpenMP's default, i.e. OMP_NUM_THREADS or every core); "
                            "the reference always runs on one thread")
    bench.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                       help="dtype of the inputs and outputs (default: float32)")
    bench.add_argument("--quick", action="store_true",
                       help=f"time each layer for ~{QUICK.min_time} s instead of ~{FULL.min_time} s: "
                            "a few seconds in all, noisier")
    bench.set_defaults(run=run_bench)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m dwcy",
        description="dwcy: fast CPU kernels for depthwise-separable convolutions. "
                    "With no command, or with only bench's options, runs bench.")
    parser.add_argument("--version", action="version", version=f"dwcy {dwcy.__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    add_bench_parser(commands)
    info = commands.add_parser("info", help="print dwcy's build and runtime configuration (dwcy.show_config())",
                               description="Print the version, compiler, flags, SIMD level, OpenMP runtime and "
                                           "default thread count.")
    info.set_defaults(run=run_info)
    return parser


def main(argv=None):
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    # bench is the default: `python -m dwcy --quick` means `python -m dwcy bench --quick`. The top-level flags
    # stay with the top-level parser, and so does an unknown word, for argparse to name the valid commands.
    if not argv or (argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version")):
        argv.insert(0, "bench")
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())

"""The command line: ``python -m dwcy [bench] [options]`` and ``python -m dwcy info``.

``bench`` (the default) times dwcy against the NumPy reference on MobileNetV2's depthwise and pointwise layers
and separable blocks (those also against dwcy's own two calls, unfused) and prints a table per section;
``info`` prints the build and runtime configuration. The pytest-benchmark suite in ``benchmarks/`` measures the
same layers at more settings (batch 8, thread counts) and saves results; this is the quick look.
"""

import argparse
import contextlib
import functools
import statistics
import sys
import time
from typing import Callable, NamedTuple

import numpy as np

import dwcy
from dwcy import reference
from dwcy._layers import BENCHMARK_LAYERS, unfused_separable_conv2d

try:
    from threadpoolctl import threadpool_limits
except ImportError:  # a dependency of dwcy's tests, not of dwcy: without it BLAS keeps its own thread count
    threadpool_limits = None


class Timing(NamedTuple):
    """How long to time each function of one case: ``rounds`` blocks, each of at least ``min_time`` seconds and
    ``min_calls`` calls, after the untimed ``SETTLE``."""

    rounds: int
    min_time: float
    min_calls: int


FULL = Timing(rounds=2, min_time=0.1, min_calls=3)
QUICK = Timing(rounds=1, min_time=0.01, min_calls=3)

# Seconds a function runs untimed before each of its blocks. Idle threads spin after a call: OpenBLAS's for
# ~0.1 s, libgomp's (dwcy's) for milliseconds. With as many threads as cores, a pool that starts while another
# spins waits for scheduler time slices instead of getting the cores: 0.04-ms dwcy calls measured 9 ms on 2 cores
# when alternated call by call with 2-thread BLAS calls.
SETTLE = 0.15


def time_interleaved(functions, timing):
    """Median seconds of one call of each of ``functions`` (no arguments), timed in alternating blocks.

    Each round runs every function in turn for one block: untimed for ``SETTLE`` seconds, so the threads of the
    previous function's pool are asleep and the one-off costs (OpenMP starting its threads, page faults on fresh
    buffers) are paid, then timed. Alternating rounds make the noise of a shared machine (a busy neighbour, a
    clock change) hit every function alike, so their ratio holds when absolute times drift; the median ignores
    the calls a neighbour spoiled. (Blocks, not calls, alternate: see ``SETTLE``.)
    """
    samples = [[] for _ in functions]
    for _ in range(timing.rounds):
        for function, times in zip(functions, samples):
            settled = time.perf_counter() + SETTLE
            function()  # at least once, however slow
            while time.perf_counter() < settled:
                function()
            started, calls = time.perf_counter(), 0
            while calls < timing.min_calls or time.perf_counter() - started < timing.min_time:
                begin = time.perf_counter()
                function()
                times.append(time.perf_counter() - begin)
                calls += 1
    return [statistics.median(times) for times in samples]


class Contender(NamedTuple):
    label: str  # names its columns
    function: Callable  # function(*layer.make_inputs(...), num_threads=threads, **layer.keywords) -> output


class Section(NamedTuple):
    title: str
    layers: tuple  # from dwcy._layers.BENCHMARK_LAYERS
    contenders: tuple  # dwcy first: the table gives its speedup over each of the others


#: The sections of the table, in order; ``--only`` picks some.
SECTIONS = {
    "depthwise": Section("depthwise layers", BENCHMARK_LAYERS["depthwise"], (
        Contender("dwcy", dwcy.depthwise_conv2d), Contender("reference", reference.depthwise_conv2d))),
    "pointwise": Section("pointwise layers", BENCHMARK_LAYERS["pointwise"], (
        Contender("dwcy", dwcy.pointwise_conv2d), Contender("reference", reference.pointwise_conv2d))),
    "separable": Section("separable blocks", BENCHMARK_LAYERS["separable"], (
        Contender("dwcy", dwcy.separable_conv2d), Contender("unfused", unfused_separable_conv2d),
        Contender("reference", reference.separable_conv2d))),
}


class Row(NamedTuple):
    layer: object
    batch: int
    seconds: list  # the median time of a call of each contender
    errors: list  # excess_error() of each contender's result: 0.0 when it agrees with the float64 reference

    @property
    def speedups(self):
        """How many times faster the first contender (dwcy) is than each of the others."""
        return [other / self.seconds[0] for other in self.seconds[1:]]

    def check(self, contenders):
        wrong = [f"{c.label} off by {error:.3g}" for c, error in zip(contenders, self.errors) if error != 0]
        return "ok" if not wrong else "WRONG (" + ", ".join(wrong) + ")"

    def cells(self, contenders):
        return ([self.layer.name, self.layer.shape_str(self.batch)] + [f"{t * 1e3:.3f}" for t in self.seconds]
                + [f"{speedup:.1f}x" for speedup in self.speedups] + [self.check(contenders)])


def table_header(contenders):
    """The column names of a section's table, and which are right-aligned (the numbers)."""
    header = (["layer", "shape (NHWC)"] + [f"{c.label} ms" for c in contenders]
              + [f"vs {c.label}" for c in contenders[1:]] + ["check"])
    numbers = len(contenders) * 2 - 1
    return header, [False, False] + [True] * numbers + [False]


def excess_error(result, expected, tolerance):
    """The largest error beyond ``tolerance`` (np.allclose's rule): 0.0 when every element is within it, NaN if
    some result is NaN where the reference is not, inf if the shapes differ."""
    if result.shape != expected.shape:
        return float("inf")
    error = np.abs(result - expected)
    bad = ~(error <= tolerance["atol"] + tolerance["rtol"] * np.abs(expected))  # ~(<=): NaN counts as bad
    return float(error[bad].max()) if bad.any() else 0.0


def bench_layer(layer, batch, dtype, threads, contenders, timing):
    """Check every contender against the float64 reference once, then time them all on ``layer``."""
    inputs = layer.make_inputs(batch, dtype)
    calls = [functools.partial(c.function, *inputs, num_threads=threads, **layer.keywords) for c in contenders]
    expected, tolerance = layer.expected(inputs), layer.tolerance(dtype)
    errors = [excess_error(call(), expected, tolerance) for call in calls]
    return Row(layer, batch, time_interleaved(calls, timing), errors)


def format_table(header, rows, right_aligned):
    """A plain-text table with aligned columns, in Markdown's pipe syntax (it renders as a table there too)."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows)]

    def line(cells):
        padded = (cell.rjust(w) if right else cell.ljust(w) for cell, w, right in zip(cells, widths, right_aligned))
        return "| " + " | ".join(padded) + " |"

    rule = ["-" * (w - 1) + ":" if right else "-" * w for w, right in zip(widths, right_aligned)]
    return "\n".join([line(header), line(rule)] + [line(row) for row in rows])


def common_keywords(layers):
    """The keyword arguments all ``layers`` share, as in a call: "padding='same', activation='relu6'"."""
    first = layers[0].keywords
    return ", ".join(f"{k}={v!r}" for k, v in first.items() if all(layer.keywords[k] == v for layer in layers))


def describe_run(args, threads):
    """The lines above the tables: what is compared, on which build, with which settings."""
    config = dwcy.config()
    default = " (OpenMP's default)" if args.threads is None else ""
    blas = (f"its matmul on BLAS limited to {threads} thread{'s' * (threads > 1)}" if threadpool_limits
            else "its matmul on BLAS's own thread count (install threadpoolctl to limit it)")
    return (
        f"dwcy {config['version']} ({config['simd_level']}) vs dwcy.reference (NumPy, {blas}) "
        f"on MobileNetV2's layers (224x224), with biases\n"
        f"batch {args.batch}, {args.dtype}, dwcy threads {threads}{default}; "
        f"median of calls in alternating blocks{', --quick' if args.quick else ''}"
    )


def run_section(section, args, threads, timing):
    """Time and print one section; return the names of the layers where a contender was wrong."""
    dtype = np.dtype(args.dtype)
    print(f"\n## {section.title}: {common_keywords(section.layers)}", flush=True)
    rows = [bench_layer(layer, args.batch, dtype, args.threads, section.contenders, timing)
            for layer in section.layers]
    header, right_aligned = table_header(section.contenders)
    print()
    print(format_table(header, [row.cells(section.contenders) for row in rows], right_aligned))
    means = (statistics.geometric_mean(speedups) for speedups in zip(*(row.speedups for row in rows)))
    vs = ", ".join(f"{mean:.1f}x vs {c.label}" for mean, c in zip(means, section.contenders[1:]))
    print(f"\ngeometric mean speedup of {section.contenders[0].label}: {vs}")
    return [row.layer.name for row in rows if any(row.errors)]


def run_bench(args):
    timing = QUICK if args.quick else FULL
    threads = args.threads or dwcy.config()["threads"]
    print(describe_run(args, threads), flush=True)
    # The references' BLAS gets dwcy's thread count (dwcy itself runs on OpenMP, which this leaves alone).
    limit = threadpool_limits(limits=threads, user_api="blas") if threadpool_limits else contextlib.nullcontext()
    with limit:
        wrong = [name for key, section in SECTIONS.items() if key in (args.only or SECTIONS)
                 for name in run_section(section, args, threads, timing)]
    if wrong:
        print(f"\nWRONG: a result disagrees with the float64 reference on {len(wrong)} layer(s): {', '.join(wrong)}")
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


def section_names(text):
    """``--only``'s value: section names, comma-separated."""
    names = [name.strip() for name in text.split(",")]
    unknown = [name for name in names if name not in SECTIONS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown section {unknown[0]!r}; choose from {', '.join(SECTIONS)}")
    return names


def add_bench_parser(commands):
    bench = commands.add_parser(
        "bench", help="time dwcy against the NumPy reference on MobileNetV2's layers (the default)",
        description="Time dwcy against dwcy.reference (NumPy) on the depthwise and pointwise layers and the "
                    "separable blocks of MobileNetV2 (224x224), the fused separable blocks also against dwcy's "
                    "depthwise then pointwise calls (unfused); check every result, and print a table per section "
                    "with dwcy's speedups and their geometric means. Exits with status 1 if a result is wrong.")
    bench.add_argument("--batch", type=positive_int, default=1, metavar="N", help="images per call (default: 1)")
    bench.add_argument("--threads", type=positive_int, default=None, metavar="N",
                       help="dwcy's num_threads (default: OpenMP's default, i.e. OMP_NUM_THREADS or every core); "
                            "the reference's matmul gets as many BLAS threads, the rest of it runs on one")
    bench.add_argument("--dtype", choices=["float32", "float64"], default="float32",
                       help="dtype of the inputs and outputs (default: float32)")
    bench.add_argument("--quick", action="store_true",
                       help="time each function on each layer in one short block instead of two longer ones: "
                            "~20 s in all instead of ~50 s, noisier")
    bench.add_argument("--only", type=section_names, action="extend", default=None, metavar="SECTION[,SECTION]",
                       help=f"time only these sections, of {', '.join(SECTIONS)} (repeatable; default: all)")
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

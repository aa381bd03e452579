"""show_config(): what this dwcy was built with and what it will use."""

import sys

from . import kernels as _kernels


def config():
    """The build and runtime configuration as a dict."""
    from . import __version__

    info = _kernels.build_info()
    info["simd_level"] = _kernels.level  # baseline, avx2 or avx512 (microkernels.h says "sse2" for the baseline)
    info["simd_levels"] = list(_kernels.usable)
    info["simd_levels_built"] = list(_kernels.built)
    info["version"] = __version__
    info["threads"] = _kernels.max_threads()
    return info


def show_config(file=None):
    """Print the version, compiler, flags, SIMD level (and the others), OpenMP runtime and default thread count."""
    info = config()
    openmp = (
        f"{info['openmp_runtime']}, OpenMP {info['openmp_version']}"
        if info["openmp"]
        else "not available: the kernels run single-threaded"
    )
    lines = [
        f"dwcy {info['version']}",
        f"  compiler:    {info['compiler']}",
        f"  flags:       {info['flags']}",
        f"  SIMD level:  {info['simd_level']} (this CPU runs: {', '.join(info['simd_levels'])}; "
        f"built: {', '.join(info['simd_levels_built'])}; DWCY_SIMD=<level> forces one)",
        f"  OpenMP:      {openmp}",
        f"  threads:     {info['threads']} (num_threads=None; OMP_NUM_THREADS and threadpoolctl limits apply)",
    ]
    print("\n".join(lines), file=file or sys.stdout)

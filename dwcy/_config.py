"""show_config(): what this dwcy was built with and what it will use."""

import sys

from . import kernels as _kernels


def config():
    """The build and runtime configuration as a dict."""
    from . import __version__

    info = _kernels.build_info()
    info["version"] = __version__
    info["threads"] = _kernels.max_threads()
    return info


def show_config(file=None):
    """Print the version, compiler, flags, SIMD level, OpenMP runtime and the default thread count."""
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
        f"  SIMD level:  {info['simd_level']}",
        f"  OpenMP:      {openmp}",
        f"  threads:     {info['threads']} (num_threads=None; OMP_NUM_THREADS and threadpoolctl limits apply)",
    ]
    print("\n".join(lines), file=file or sys.stdout)

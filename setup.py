"""Build dwcy's Cython kernels: OpenMP when the compiler has it, -O3, and one module per SIMD level.

The kernel source is compiled once per SIMD level (SIMD_LEVELS below: the x86-64 baseline, AVX2+FMA and
AVX-512 on x86-64; the baseline alone elsewhere) into the modules dwcy._kernels.<level>; a level whose flags
the compiler refuses is left out. dwcy.kernels, compiled for the baseline, chooses the best level the CPU runs
at import (DWCY_SIMD=baseline|avx2|avx512 forces one) and forwards the C-level API of kernels.pxd to it.

Environment switches:
  DWCY_NATIVE=1     also tune every level for the building machine (-mtune=native: the code still runs on any
                    CPU of its level, only instruction scheduling changes)
  DWCY_NO_OPENMP=1  build without OpenMP (kernels then run single-threaded; show_config() says so)
  DWCY_DEBUG=1      Cython bounds checks on, -O0 -g
  DWCY_PLAIN_C=1    the tiles' plain-C fallback (what compilers without GCC/Clang vector extensions, MSVC, get)
                    instead of their vector code: 8-14x slower, for testing that fallback with gcc or clang
  DWCY_SANITIZE=address,undefined
                    build with -fsanitize=... -fno-omit-frame-pointer (gcc, clang); see the README's
                    developer section for running the tests under it
"""

import os
import platform
import shutil
import subprocess
import sys
import tempfile
import textwrap

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

OPENMP_PROBE = textwrap.dedent(
    """
    #include <omp.h>
    #include <stdio.h>
    int main(void) {
        int n = 0;
        #pragma omp parallel num_threads(2) reduction(+:n)
        n += 1;
        printf("%d\\n", n);
        return n == 2 ? 0 : 1;
    }
    """
)

# name: (gcc/clang flags, MSVC flags, a function the flags must compile), from the baseline to the best. The
# baseline is what the target runs without flags (x86-64: SSE2); the other levels exist on x86-64 only.
# dwcy/kernels.pyx checks the same CPU features at import (dwcy_cpu_avx2, dwcy_cpu_avx512): keep them in step.
# Each level is tuned for a CPU of its own (-mtune changes scheduling only, the code runs on any CPU of the
# level): gcc's generic tuning made the AVX-512 depthwise kernels 10-20 % slower on large layers here.
SIMD_LEVELS = {
    "baseline": ([], [], ""),
    "avx2": (["-mavx2", "-mfma", "-mtune=haswell"], ["/arch:AVX2"],
             "__m256 f(__m256 a) { return _mm256_fmadd_ps(a, a, _mm256_castsi256_ps(_mm256_abs_epi32("
             "_mm256_castps_si256(a)))); }"),
    "avx512": (["-mavx512f", "-mavx512bw", "-mavx512dq", "-mavx512vl", "-mavx2", "-mfma", "-mtune=icelake-server"],
               ["/arch:AVX512"],
               "__m512 f(__m512 a) { return _mm512_fmadd_ps(a, a, _mm512_castsi512_ps(_mm512_abs_epi8("
               "_mm512_castps_si512(a)))); }"),
}
LEVEL_MODULE = "dwcy._kernels."  # + the level's name
X86_64 = platform.machine().lower() in ("x86_64", "amd64", "x64")

DIRECTIVES = {
    "language_level": 3,
    "boundscheck": False,
    "wraparound": False,
    "cdivision": True,
    "initializedcheck": False,
    "nonecheck": False,
}


def _env_flag(name, default):
    return os.environ.get(name, default).strip().lower() not in ("0", "", "false", "no", "off")


def _sanitizer_flags():
    """-fsanitize=... from DWCY_SANITIZE (e.g. "address,undefined"), or none.

    UBSan is made fatal (-fno-sanitize-recover) so that a report fails the test that caused it. -g1: the line
    tables that reports need, not the full debug information (the build took 6.4 minutes with it, 4.5 without).
    """
    checks = os.environ.get("DWCY_SANITIZE", "").strip()
    if not checks:
        return []
    return [f"-fsanitize={checks}", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-g1"]


def _openmp_flags(compiler):
    """(compile, link) flags for OpenMP, per the compiler (the extension-helpers table)."""
    if compiler.compiler_type == "msvc":
        return ["/openmp"], []
    if sys.platform == "darwin":  # Apple clang: libomp from Homebrew, found through CFLAGS/LDFLAGS
        return ["-Xpreprocessor", "-fopenmp"], ["-lomp"]
    return ["-fopenmp"], ["-fopenmp"]


def _compiles(compiler, source, compile_args, link_args, run=False):
    """Does ``source`` compile and link (and, with ``run``, exit 0) with these flags?"""
    tmp = tempfile.mkdtemp(prefix="dwcy-probe-")
    try:
        path = os.path.join(tmp, "probe.c")
        with open(path, "w") as f:
            f.write(source)
        devnull = open(os.devnull, "w")
        saved = os.dup(2)
        os.dup2(devnull.fileno(), 2)  # the probes' expected failures are not build errors
        try:
            objects = compiler.compile([path], output_dir=tmp, extra_postargs=compile_args)
            exe = os.path.join(tmp, "probe")
            compiler.link_executable(objects, exe, extra_postargs=link_args)
        finally:
            os.dup2(saved, 2)
            devnull.close()
        if run:
            subprocess.run([exe], check=True, capture_output=True, timeout=60)
        return True
    except Exception:
        return False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _simd_flags(compiler, level):
    """The flags of a SIMD level for this compiler, or None when it cannot build that level."""
    gcc_flags, msvc_flags, probe = SIMD_LEVELS[level]
    if level == "baseline":
        return []
    if not X86_64:
        return None
    flags = msvc_flags if compiler.compiler_type == "msvc" else gcc_flags
    source = "#include <immintrin.h>\n%s\nint main(void) { return 0; }\n" % probe
    return flags if _compiles(compiler, source, flags, []) else None


class BuildExt(build_ext):
    """Adds OpenMP (when a test program compiles, links and runs with it), the optimization flags and each
    kernel module's SIMD flags; leaves out the SIMD levels the compiler cannot build."""

    def finalize_options(self):
        super().finalize_options()
        if self.parallel is None:  # the kernel modules compile side by side (pip passes no -j)
            self.parallel = os.cpu_count() or 1

    def build_extensions(self):
        compiler = self.compiler
        msvc = compiler.compiler_type == "msvc"
        debug = _env_flag("DWCY_DEBUG", "0")
        # -g0: no debug information (Python's own flags ask for it) in the unrolled tiles: the avx512 module
        # built in 70 s and took 7.7 MB with it, 49 s and 0.9 MB without.
        compile_args = (["/Od"] if debug else ["/O2"]) if msvc else (["-O0", "-g"] if debug else ["-O3", "-g0"])
        link_args = []
        if not msvc:
            if _env_flag("DWCY_NATIVE", "0") and _compiles(compiler, "int main(void){return 0;}\n",
                                                          ["-mtune=native"], []):
                compile_args.append("-mtune=native")
            sanitize = _sanitizer_flags()
            compile_args += sanitize
            link_args += sanitize
        openmp_compile, openmp_link = [], []
        if not _env_flag("DWCY_NO_OPENMP", "0"):
            omp_compile, omp_link = _openmp_flags(compiler)
            if _compiles(compiler, OPENMP_PROBE, omp_compile, omp_link, run=True):
                openmp_compile, openmp_link = omp_compile, omp_link
            else:
                print("dwcy: the compiler has no working OpenMP; building single-threaded kernels", file=sys.stderr)
        kept = []
        for ext in self.extensions:
            level = ext.name[len(LEVEL_MODULE):] if ext.name.startswith(LEVEL_MODULE) else None
            if level is None:  # dwcy.kernels, the dispatcher: no kernels, no OpenMP
                ext.extra_compile_args = compile_args + ext.extra_compile_args
                ext.extra_link_args = link_args + ext.extra_link_args
                kept.append(ext)
                continue
            simd = _simd_flags(compiler, level)
            if simd is None:
                print(f"dwcy: the compiler cannot build the {level} kernels; leaving them out", file=sys.stderr)
                continue
            flags = compile_args + simd + openmp_compile
            if _env_flag("DWCY_PLAIN_C", "0"):
                flags = flags + ["/DDWCY_NO_VECTOR_EXTENSIONS" if msvc else "-DDWCY_NO_VECTOR_EXTENSIONS"]
            ext.extra_compile_args = flags + ext.extra_compile_args
            ext.extra_link_args = link_args + openmp_link + ext.extra_link_args
            ext.define_macros.append(("DWCY_BUILD_FLAGS", '"%s"' % " ".join(flags).replace('"', "")))
            kept.append(ext)
        self.extensions[:] = kept
        super().build_extensions()


def extensions():
    debug = _env_flag("DWCY_DEBUG", "0")
    exts = [Extension("dwcy.kernels", ["dwcy/kernels.pyx"], include_dirs=["dwcy/_kernels"])]
    for level in SIMD_LEVELS:  # dwcy/_kernels/<level>.pyx: the same kernels (level.pxi), built per level
        ext = Extension(
            LEVEL_MODULE + level,
            [f"dwcy/_kernels/{level}.pyx"],
            include_dirs=[np.get_include(), "dwcy/_kernels"],
            define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
        )
        exts.append(ext)
    directives = dict(DIRECTIVES)
    if debug:
        directives.update(boundscheck=True, wraparound=True, initializedcheck=True)
    return cythonize(exts, compiler_directives=directives)


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt})

"""Build dwcy's Cython kernels: OpenMP when the compiler has it, -O3, and the SIMD level of the build.

Environment switches:
  DWCY_NATIVE=0     build for the portable x86-64 baseline instead of the building machine (-march=native)
  DWCY_NO_OPENMP=1  build without OpenMP (kernels then run single-threaded; show_config() says so)
  DWCY_DEBUG=1      Cython bounds checks on, -O0 -g
  DWCY_SANITIZE=address,undefined
                    build with -fsanitize=... -fno-omit-frame-pointer (gcc, clang); see the README's
                    developer section for running the tests under it
"""

import os
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

    UBSan is made fatal (-fno-sanitize-recover) so that a report fails the test that caused it.
    """
    checks = os.environ.get("DWCY_SANITIZE", "").strip()
    if not checks:
        return []
    return [f"-fsanitize={checks}", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer", "-g"]


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


class BuildExt(build_ext):
    """Adds OpenMP (when a test program compiles, links and runs with it) and the optimization flags."""

    def build_extensions(self):
        compiler = self.compiler
        msvc = compiler.compiler_type == "msvc"
        debug = _env_flag("DWCY_DEBUG", "0")
        compile_args = (["/Od"] if debug else ["/O2"]) if msvc else (["-O0", "-g"] if debug else ["-O3"])
        link_args = []
        if not msvc:
            if _env_flag("DWCY_NATIVE", "1") and _compiles(compiler, "int main(void){return 0;}\n",
                                                          ["-march=native"], []):
                compile_args.append("-march=native")
            sanitize = _sanitizer_flags()
            compile_args += sanitize
            link_args += sanitize
        openmp = False
        if not _env_flag("DWCY_NO_OPENMP", "0"):
            omp_compile, omp_link = _openmp_flags(compiler)
            openmp = _compiles(compiler, OPENMP_PROBE, omp_compile, omp_link, run=True)
            if openmp:
                compile_args += omp_compile
                link_args += omp_link
            else:
                print("dwcy: the compiler has no working OpenMP; building single-threaded kernels", file=sys.stderr)
        flags = " ".join(compile_args)
        for ext in self.extensions:
            ext.extra_compile_args = compile_args + ext.extra_compile_args
            ext.extra_link_args = link_args + ext.extra_link_args
            ext.define_macros.append(("DWCY_BUILD_FLAGS", '"%s"' % flags.replace('"', "")))
        super().build_extensions()


def extensions():
    debug = _env_flag("DWCY_DEBUG", "0")
    ext = Extension(
        "dwcy.kernels",
        ["dwcy/kernels.pyx"],
        include_dirs=[np.get_include(), "dwcy/_kernels"],
        define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    )
    directives = dict(DIRECTIVES)
    if debug:
        directives.update(boundscheck=True, wraparound=True, initializedcheck=True)
    return cythonize([ext], compiler_directives=directives)


setup(ext_modules=extensions(), cmdclass={"build_ext": BuildExt})

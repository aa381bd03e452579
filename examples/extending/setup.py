"""Build the example against the installed dwcy: its .pxd files and its header (dwcy.get_include())."""

import os

import dwcy
from Cython.Build import cythonize
from setuptools import Extension, setup

# Cython finds dwcy/kernels.pxd on sys.path after a regular install of dwcy; an editable install
# (pip install -e) is not on sys.path, so name the directory that holds the dwcy package.
pxd_path = os.path.dirname(os.path.dirname(dwcy.__file__))
extension = Extension("separable_batch", ["separable_batch.pyx"], include_dirs=[dwcy.get_include()])
setup(name="dwcy-extending-example", ext_modules=cythonize([extension], include_path=[pxd_path]))

"""dwcy: fast CPU kernels for depthwise-separable convolutions on NHWC NumPy arrays.

>>> import numpy as np, dwcy
>>> x = np.ones((1, 8, 8, 4), np.float32)
>>> w = np.ones((3, 3, 4), np.float32)
>>> dwcy.depthwise_conv2d(x, w, padding="same").shape
(1, 8, 8, 4)
"""

import os as _os
import sys as _sys
from importlib.machinery import EXTENSION_SUFFIXES as _EXTENSION_SUFFIXES, PathFinder as _PathFinder
from importlib.metadata import PackageNotFoundError, version as _version


def _built(package_dir):
    """Does this dwcy directory hold its compiled kernels (dwcy.kernels as an extension module)?"""
    return any(_os.path.exists(_os.path.join(package_dir, "kernels" + suffix)) for suffix in _EXTENSION_SUFFIXES)


def _installed_copy():
    """The directory of the built dwcy that the import system finds after this one, when this one is an unbuilt
    source tree: the README's ``pip install ".[cli]" && python -m dwcy``, run in a checkout, puts the checkout
    first on sys.path. (Asked of every finder: an editable install has one of its own.)"""
    here = _os.path.dirname(_os.path.abspath(__file__))
    if _built(here):
        return None
    elsewhere = [entry for entry in _sys.path if _os.path.abspath(entry or ".") != _os.path.dirname(here)]
    for finder in _sys.meta_path:
        try:
            spec = finder.find_spec("dwcy", elsewhere if finder is _PathFinder else None)
        except (AttributeError, ImportError, TypeError):  # a finder of another protocol
            continue
        found = _os.path.dirname(_os.path.abspath(spec.origin)) if spec is not None and spec.origin else None
        if found is not None and found != here and _built(found):
            return found
    return None


if _installed_copy() is not None:
    # Become the installed package: its modules (dwcy.kernels, dwcy.__main__, ...) and its __init__, run here.
    __path__[:] = [_installed_copy()]
    __file__ = _os.path.join(__path__[0], "__init__.py")
    with open(__file__, encoding="utf-8") as _source:
        exec(compile(_source.read(), __file__, "exec"))
else:
    from . import models, reference
    from ._api import Depthwise, Pointwise, Separable, depthwise_conv2d, pointwise_conv2d, separable_conv2d
    from ._args import ACTIVATIONS
    from ._config import config, show_config

try:
    __version__ = _version("dwcy")
except PackageNotFoundError:  # pragma: no cover - running from an unbuilt tree
    __version__ = "0+unknown"


def get_include():
    """The directory of the C headers that code cimporting ``dwcy.kernels`` compiles with (include_dirs)."""
    return _os.path.join(_os.path.dirname(__file__), "_kernels")


__all__ = [
    "depthwise_conv2d", "pointwise_conv2d", "separable_conv2d", "Depthwise", "Pointwise",
    "Separable", "reference", "models",
    "show_config", "config", "get_include", "ACTIVATIONS", "__version__",
]

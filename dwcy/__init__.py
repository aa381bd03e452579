"""dwcy: fast CPU kernels for depthwise-separable convolutions on NHWC NumPy arrays.

>>> import numpy as np, dwcy
>>> x = np.ones((1, 8, 8, 4), np.float32)
>>> w = np.ones((3, 3, 4), np.float32)
>>> dwcy.depthwise_conv2d(x, w, padding="same").shape
(1, 8, 8, 4)
"""

import os as _os
from importlib.metadata import PackageNotFoundError, version as _version

from . import models, reference
from ._api import depthwise_conv2d, pointwise_conv2d, separable_conv2d
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
    "depthwise_conv2d", "pointwise_conv2d", "separable_conv2d", "reference", "models",
    "show_config", "config", "get_include", "ACTIVATIONS", "__version__",
]

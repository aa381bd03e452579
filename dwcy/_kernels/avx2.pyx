# The kernels for AVX2 and FMA (x86-64: Haswell, Zen and later).
# setup.py gives each level's flags; level.pxi is the same code for every level.
include "level.pxi"

# The kernels for AVX-512 F, BW, DQ and VL (x86-64: Skylake-X, Ice Lake, Zen 4 and later).
# setup.py gives each level's flags; level.pxi is the same code for every level.
include "level.pxi"

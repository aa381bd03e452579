# The kernels for the baseline of the target (x86-64: SSE2), which every CPU of it runs.
# setup.py gives each level's flags; level.pxi is the same code for every level.
include "level.pxi"

# The kernels compiled for the building machine (-march=native; DWCY_NATIVE=0 for the x86-64 baseline).
include "kernels.pxi"

# The kernels, compiled for the building machine (-march=native; DWCY_NATIVE=0 for the x86-64 baseline):
# the Python entry points that dwcy._api calls, and the C-level API of kernels.pxd.
include "_kernels/kernels.pxi"
include "_kernels/c_api.pxi"

# One SIMD level's kernel module: dwcy/_kernels/{baseline,avx2,avx512}.pyx each include this file, and
# setup.py compiles each with its level's flags (microkernels.h picks the tile sizes from the flags).
#
# A level module holds everything that depends on the instruction set: the Python entry points of
# kernels.pxi (what dwcy._api calls) and the C-level API of c_api.pxi, exported as a table of function
# pointers (c_api_table.pxi) that dwcy.kernels forwards to. dwcy.kernels imports one level module, the one
# it chose; never import a level the CPU cannot run (its code may use the level's instructions anywhere).

from cpython.pycapsule cimport PyCapsule_New

# The C types of kernels.pxd: types only, so this cimport makes no import of dwcy.kernels at run time.
from dwcy.kernels cimport ACT_HARDSWISH, ACT_NONE, ACT_RELU, ACT_RELU6, DwGeometry, GemmWeights, Plan

include "kernels.pxi"
include "c_api.pxi"
include "c_api_table.pxi"

cdef KernelTable _table
_table.size = sizeof(KernelTable)
_table.depthwise_f32 = depthwise_f32
_table.depthwise_f64 = depthwise_f64
_table.pointwise_f32 = pointwise_f32
_table.pointwise_f64 = pointwise_f64
_table.separable_f32 = separable_f32
_table.separable_f64 = separable_f64
_table.depthwise_plan_f32 = depthwise_plan_f32
_table.depthwise_plan_f64 = depthwise_plan_f64
_table.depthwise_run_f32 = depthwise_run_f32
_table.depthwise_run_f64 = depthwise_run_f64
_table.pointwise_plan_f32 = pointwise_plan_f32
_table.pointwise_plan_f64 = pointwise_plan_f64
_table.pointwise_run_f32 = pointwise_run_f32
_table.pointwise_run_f64 = pointwise_run_f64
_table.separable_plan_f32 = separable_plan_f32
_table.separable_plan_f64 = separable_plan_f64
_table.separable_run_f32 = separable_run_f32
_table.separable_run_f64 = separable_run_f64
_table.plan_free = plan_free

#: This level's C-level API, for dwcy.kernels: a capsule holding a pointer to its KernelTable.
c_api = PyCapsule_New(&_table, KERNEL_TABLE_CAPSULE, NULL)

/*
 * Activation codes: the index of the name in dwcy._args.ACTIVATIONS (None, "relu", "relu6", "hardswish").
 * Included by the kernels (microkernels.h) and by code that cimports dwcy.kernels.
 */
#ifndef DWCY_ACTIVATIONS_H
#define DWCY_ACTIVATIONS_H
enum { DWCY_ACT_NONE = 0, DWCY_ACT_RELU = 1, DWCY_ACT_RELU6 = 2, DWCY_ACT_HARDSWISH = 3 };
#endif

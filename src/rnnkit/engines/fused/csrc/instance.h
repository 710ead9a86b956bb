/* One type's instance of the kernels (kernels.c defines REAL, SFX and the exp constants first). */
#include "vmath.h"
#include "gemm.h"
#include "reg.h"
#include "panels.h"
#if RK_BF16_HERE
#include "bf16.h"
#endif
#include "lstm.h"
#include "gru.h"
#include "elman.h"
#include "indrnn.h"
#include "dropout.h"
#include "lnorm.h"

static const rk_kernels RK(table) = {
    RK_ISA_STR,           RK_VBYTES,           RK(gemm_entry),     RK(pack_entry),      RK(lstm_fwd_entry),
    RK(lstm_bwd_entry),   RK(gru_fwd_entry),   RK(gru_bwd_entry),  RK(elman_fwd_entry), RK(elman_bwd_entry),
    RK(jordan_fwd_entry), RK(jordan_bwd_entry), RK(dropout_entry),
#if RK_BF16_HERE
    rk_pack_bf16_entry,
#else
    NULL,
#endif
    RK(peak_entry),
    rk_take_waited_ns,
    RK(indrnn_fwd_entry),
    RK(indrnn_bwd_entry),
    RK(ln_fwd_entry),
    RK(ln_bwd_entry),
#if RK_BF16_HERE
    rk_rowpairs_entry,
    rk_gemm_pairs_entry,
#else
    NULL,
    NULL,
#endif
};
#undef RK_BF16_HERE
#undef UP
#undef VL
#undef KC
#undef MB
#undef MR_MAX
#undef REAL
#undef IREAL
#undef SFX
#undef vec
#undef vecu
#undef ivec
#undef EXP_LO
#undef EXP_HI
#undef ROUND_SHIFTER
#undef LN2_HI
#undef LN2_LO
#undef EXP_BIAS
#undef MANT_BITS
#undef EXP_DEGREE
#undef EXP_C
#undef MM
#undef MMV
#undef RECIP_STEPS

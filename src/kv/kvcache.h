/* kvcache.h - the KV cache: for every (layer, KV head) one key slot and one value slot of the
 * chosen codecs, plus the policy rows around them in the window codec (f16 unless --kv-window:
 * first `sinks` positions and a ring of the last `recent` positions). Attention reads it through kv_cache_attend, which walks the
 * segments (sinks, codec rows, recent rows) and calls only the codec kernels. */
#ifndef KVC_KVCACHE_H
#define KVC_KVCACHE_H

#include "codec.h"
#include "../arch/kernels.h"

struct kv_side {                /* keys or values */
    struct kv_spec spec;        /* the codec */
    struct kv_spec specw;       /* the window codec (f16 by default), for sinks and recent rows */
    struct kv_slot *slot;       /* (n_layer * n_head_kv) codec slots */
    struct kv_slot *slotw;      /* (n_layer * n_head_kv) window slots */
    struct kv_spec spec32;      /* f32, for blocks of rows decoded once per batch (batch_decode codecs) */
    struct kv_slot *slot32;     /* (n_layer * n_head_kv) f32 slots, NULL unless the codec has batch_decode */
    uint8_t *codes;             /* per (layer, KV head): (n_ctx - sinks, slot row_bytes) at slot_off */
    uint8_t *sink;              /* (n_layer, n_head_kv, sinks, wrow bytes) window rows */
    uint8_t *ring;              /* (n_layer, n_head_kv, recent, wrow bytes); position p at p % recent */
    uint8_t *stage;             /* (n_head_kv, n_batch, wrow bytes): window rows of the batch in flight */
    size_t wrow;                /* bytes of one window row (f16: 2 d) */
    size_t row_bytes;           /* bytes of one codec row of slot 0 (slots may differ: slot[i].row_bytes) */
    uint64_t *slot_off;         /* (n_layer * n_head_kv) byte offset of each slot's rows in codes */
    uint64_t pos_bytes;         /* codec bytes of one position over all slots */
    uint64_t bytes;             /* codes + sink + ring */
    uint64_t codes_bytes;       /* size of codes */
    int codes_lazy;             /* codes from kvc_alloc_lazy: memory taken as rows are written */
};

struct kv_cache {
    int n_layer, n_head_kv, d, n_ctx, n_batch, sinks, recent;
    enum kvc_isa isa;           /* level of the cache's own kernels (softmax) */
    struct kv_side k, v;
    int n_past;                 /* positions filled */
    int ring_lo;                /* positions below it are not in the ring (cut by kv_cache_truncate):
                                 * windows read them from their codec rows until the ring refills */
};

/* Keep positions [0, n) (n <= n_past). With a recent window the ring no longer holds the window
 * rows of [n - recent, n) once later positions overwrote them: windows read those from their
 * codec rows (every position >= sinks has one) until recent new positions refilled the ring,
 * so the next recent positions see a lossier cache than an unbroken fill would (bench's depth
 * truncation: the same number of rows is read). */
void kv_cache_truncate(struct kv_cache *c, int n);

/* Most query rows (tokens x query heads of a group) one blocked-attention call handles (256:
 * a block of decoded K/V rows serves 256 / G tokens; 64 made keys=pre prefill 20 % slower). */
#define KV_MAX_QROWS 256
/* Positions per block of the blocked attention: the K/V rows of one block stay in L1/L2
 * while every query row of the call is scored against them. */
#define KV_BLOCK 256
#ifndef KV_DECODE_BLOCK
/* Positions per block when the call has few query rows and no batch-decoded blocks (decode:
 * G rows x KV_DECODE_BLOCK scores must fit the KV_MAX_QROWS x KV_BLOCK of the scratch). */
#define KV_DECODE_BLOCK 1024
#endif
/* Fewest tokens in one blocked-attention call for which a batch_decode codec's key rows are
 * decoded once per block (decoding costs about as much as scoring one token's G heads). */
#define KV_BATCH_DECODE_MIN 2
/* The same for value rows (decoding one costs about as much as summing it into 2-4 rows). */
#define KV_BATCH_DECODE_MIN_V 4

/* Per-thread scratch for attention. */
struct kv_attn_scratch {
    float *scores;              /* (n_ctx) */
    float *qp, *qpw;            /* (KV_MAX_QROWS, qp_floats), (KV_MAX_QROWS, d) prepared queries of the
                                 * codec rows and of the window rows */
    float *qpf;                 /* (KV_MAX_QROWS, d) plain queries for batch-decoded (f32) key rows */
    float *acc, *accw;          /* (KV_MAX_QROWS, acc_floats), (KV_MAX_QROWS, d) value sums of the
                                 * codec rows and of the plain rows (window, batch-decoded to floats) */
    float *m, *l;               /* (KV_MAX_QROWS) online-softmax running max and sum */
    float *kblk;                /* (KV_BLOCK, d) key rows of one block decoded for a batch */
    float *vblk;                /* (KV_BLOCK, d) value rows of one block decoded for a batch */
    float *kt;                  /* (d, KV_BLOCK) the decoded key rows of kblk transposed (score GEMM) */
};

kvc_status kv_cache_init(struct kv_cache *c, int n_layer, int n_head_kv, int d, int n_ctx,
                         int n_batch, const char *spec_k, const char *spec_v, int sinks,
                         int recent, float rope_base, uint64_t seed,
                         const struct kvc_calib *calib, enum kvc_isa isa, kvc_error *err);
/* The model's RoPE as the codecs see it (fields as in struct kv_slot_info). */
struct kv_rope {
    float base;
    int neox;
    const float *freq_factors; /* (d/2) or NULL */
    float freq_scale;          /* 1 = no linear scaling */
};
/* kv_cache_init with the model's full RoPE description (kv_cache_init: adjacent pairs, no
 * frequency factors or scaling) and the window codec spec_w of the sink / recent rows (NULL:
 * f16; kv_window_check says which codecs may be one). */
kvc_status kv_cache_init_rope(struct kv_cache *c, int n_layer, int n_head_kv, int d, int n_ctx,
                              int n_batch, const char *spec_k, const char *spec_v, const char *spec_w, int sinks,
                              int recent, const struct kv_rope *rope, uint64_t seed,
                              const struct kvc_calib *calib, enum kvc_isa isa, kvc_error *err);
/* kv_cache_init_rope whose codec rows take memory page by page as positions are written
 * (address space for n_ctx positions; the server's sequences grow block by block this way). */
kvc_status kv_cache_init_lazy(struct kv_cache *c, int n_layer, int n_head_kv, int d, int n_ctx,
                              int n_batch, const char *spec_k, const char *spec_v, const char *spec_w, int sinks,
                              int recent, const struct kv_rope *rope, uint64_t seed,
                              const struct kvc_calib *calib, enum kvc_isa isa, kvc_error *err);
void kv_cache_free(struct kv_cache *c);

/* Bytes of one side's (K or V) stage of a batch's rows: (n_head_kv, n_batch) window rows of
 * row_bytes each. */
uint64_t kv_stage_bytes(int n_head_kv, int n_batch, size_t row_bytes);
/* Whether spec_w (NULL: f16) may hold the sink / recent rows for head dim d: a codec without
 * per-slot state, whose value sums are d plain floats (f32, f16, bf16, q8_0, q4_0); its row
 * bytes in *row_bytes. KVC_ERR_ARG naming --kv-window otherwise. */
kvc_status kv_window_check(const char *spec_w, int d, size_t *row_bytes, kvc_error *err);
kvc_status kv_cache_scratch_init(const struct kv_cache *c, struct kv_attn_scratch *s);
/* Floats kv_cache_scratch_init allocates for a context of n_ctx positions, head dim d and the
 * codecs' prepared-query / value-sum widths qp_floats, acc_floats (each raised to d): the one
 * formula both the allocation and `kvcodec plan` (src/plan.c) use. */
size_t kv_scratch_floats(int n_ctx, int d, size_t qp_floats, size_t acc_floats);
void kv_cache_scratch_free(struct kv_attn_scratch *s);

/* Store the rows of T new tokens at positions p0..p0+T-1 for one (layer, KV head):
 * k_rows / v_rows are (T, d). Rows go to the codec (positions >= sinks), the sink rows, and
 * the stage (for recent-window reads while the batch is in flight). */
void kv_cache_store(struct kv_cache *c, int layer, int head, int p0, int T, const float *k_rows,
                    const float *v_rows);
/* Decode the cached K and V rows of positions p0..p0+n-1 of (layer, head) into k, v (n, d)
 * (tests, tools). -1 when the cache keeps a recent window or the positions are not cached. */
int kv_cache_read(const struct kv_cache *c, int layer, int head, int p0, int n, float *k, float *v);
/* After all heads of a layer attended: move the staged rows of the batch into the ring. */
void kv_cache_commit_layer(struct kv_cache *c, int layer, int p0, int T);

/* Reference attention of one query q (d floats, post-RoPE) at position t (batch start p0)
 * over positions 0..t of (layer, head): scores of all positions, softmax, then the value
 * sum: out (d) = sum softmax(scale * q.k) v. The tests' yardstick for kv_cache_attend_rows. */
void kv_cache_attend(const struct kv_cache *c, struct kv_attn_scratch *s, int layer, int head,
                     const float *q, int t, int p0, float scale, float *out);

/* Floats of one partial result (running max, sum, flags, codec and plain value sums). */
size_t kv_part_floats(const struct kv_cache *c);
/* The same for head dim d and value-sum width acc_floats (raised to d), without a cache. */
size_t kv_part_floats_of(int d, size_t acc_floats);
/* Partial results a thread may hold in the split attention: the context allocates
 * KV_PARTS_PER_THREAD * n_threads * KV_MAX_QROWS * kv_part_floats floats for them. */
#define KV_PARTS_PER_THREAD 4

/* Blocked attention with an online softmax: query rows of batch tokens i0..i1-1 (positions
 * p0 + i) for the G query heads sharing KV head `head` (G * (i1 - i0) <= KV_MAX_QROWS),
 * restricted to positions [pa, pb) (and <= each token's own position). Token i, group head g:
 * query q + i * q_stride + g * d, output out + i * q_stride + g * d. Each block of KV_BLOCK
 * positions is scored for every query row before the next is read (one pass over K and V).
 * parts == NULL: outputs are finished (the range must start at 0 and cover every position).
 * Otherwise the partial state of row (i, g) goes to parts + ((i - i0) * G + g) *
 * kv_part_floats(c), for kv_cache_attend_merge. */
void kv_cache_attend_rows(const struct kv_cache *c, struct kv_attn_scratch *s, int layer,
                          int head, int G, const float *q, size_t q_stride, int i0, int i1,
                          int p0, int pa, int pb, float scale, float *out, float *parts);
/* Merge n_parts partial results of one query row (parts[k] from position ranges that
 * together cover every position) and finish it: out (d). */
void kv_cache_attend_merge(const struct kv_cache *c, int layer, int head, float *const *parts,
                           int n_parts, float *out);

/* Memory accounting at full context. */
double kv_side_bits(const struct kv_cache *c, const struct kv_side *sd);

#endif

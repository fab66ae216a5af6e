/* sched.h - the server's engine: one context, one KV pool of --kv-budget bytes shared by all
 * sequences in blocks of 256 positions, and a scheduler thread that runs continuous batching
 * (each step: the next token of every active sequence and prompt chunks of new ones in one
 * kvc_eval_batch). A sequence is admitted with its prompt's blocks + 1 and takes a block each
 * 256 positions; when the pool is empty the youngest sequence is preempted and recomputed
 * later. Requests wait in a bounded queue; a finished or cancelled request returns its blocks
 * at once. Thread-safe: submit, wait, cancel and stats may be called from any thread. */
#ifndef KVC_SERVE_SCHED_H
#define KVC_SERVE_SCHED_H

#include "kvcodec.h"

struct serve_params {
    int parallel;        /* most active sequences (default 4) */
    int queue;           /* most waiting requests; past it submit says "full" (default 64) */
    int ctx_per_seq;     /* positions per sequence, prompt + generated (default 2048) */
    int chunk;           /* most prompt tokens of one sequence per step (default 256) */
    uint64_t kv_budget;  /* bytes of KV cache for all sequences together */
};
struct serve_params serve_default_params(void);

#define SERVE_MAX_STOP 4

/* One request. The prompt is copied. max_tokens <= 0: until the end of the sequence's context. */
struct serve_req_params {
    const int32_t *prompt;
    int n_prompt;
    int max_tokens;
    double temperature, top_p; /* temperature 0 = greedy */
    int top_k;                 /* 0 = all */
    uint64_t seed;
    const char *stop[SERVE_MAX_STOP];
    int n_stop;
};

typedef struct serve_sched serve_sched;
typedef struct serve_req serve_req;

/* The scheduler uses c (created with n_ctx >= ctx_per_seq) and m; both outlive it. Fails when
 * the budget cannot hold one sequence of ctx_per_seq positions. Starts the engine thread. */
kvc_status serve_create(kvc_ctx *c, const kvc_model *m, const struct serve_params *p, serve_sched **out,
                        kvc_error *err);
/* Stops the engine thread, cancels what is left, frees everything (requests still held by
 * callers stay valid until released). */
void serve_free(serve_sched *s);
/* Stop admitting new requests (serve_submit answers SERVE_CLOSED) and wake every waiter. */
void serve_close(serve_sched *s);

enum serve_submit_status { SERVE_QUEUED = 0, SERVE_FULL = 1, SERVE_TOO_LONG = 2, SERVE_CLOSED = 3, SERVE_NOMEM = 4 };
/* Queue a request; on SERVE_QUEUED *out holds a reference (serve_release it). */
enum serve_submit_status serve_submit(serve_sched *s, const struct serve_req_params *rp, serve_req **out);

/* Progress of a request, copied out under the lock. */
struct serve_progress {
    size_t ready;        /* bytes of text safe to send (no partial UTF-8, no possible stop prefix) */
    int done;            /* 1 when finished */
    const char *finish;  /* "stop", "length", "cancelled", "error" once done */
    int n_prompt, n_gen;
};
/* Wait until more than `have` bytes are ready or the request is done (at most timeout_ms;
 * -1 = no limit). Copies ready text beyond `have` into *buf (realloc'ed, *cap its size);
 * returns the number of new bytes. */
size_t serve_wait(serve_req *r, size_t have, char **buf, size_t *cap, struct serve_progress *pr, int timeout_ms);
void serve_cancel(serve_req *r);
void serve_release(serve_req *r);

struct serve_stats {
    int active, queued, parallel, queue;
    uint64_t kv_used, kv_budget;
    uint64_t prompt_tokens, gen_tokens, requests_done, requests_rejected;
    uint64_t preemptions, recomputed_tokens; /* sequences preempted; tokens evaluated again for them */
    uint64_t blocks_used;                    /* pool blocks held by active sequences */
    int block_positions;                     /* positions per block */
    double tokens_per_s; /* generated tokens per second over the last ~10 s */
};
void serve_get_stats(serve_sched *s, struct serve_stats *st);

#endif

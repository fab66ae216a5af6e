/* sched.c - the server's engine (see sched.h): a FIFO queue, up to `parallel` active
 * sequences whose KV caches take blocks of SEQ_BLOCK positions from one byte budget as they
 * grow (admission: the prompt's blocks + 1; when the pool is empty mid-generation the
 * youngest sequence is preempted: its blocks are freed and it waits at the head of the queue
 * to be recomputed from its prompt and the tokens it generated), and an engine thread that
 * builds one batch per step, evaluates it, samples, and hands text to the waiting HTTP
 * threads. */
#include "sched.h"
#include "../util.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SEQ_BLOCK 256 /* positions per pool block (the attention's KV block) */

struct serve_req {
    /* set at submit */
    int32_t *feed;       /* (n_prompt + max_tokens) the prompt, then each generated token */
    int n_feed;          /* tokens in feed: the prompt and the generated tokens so far */
    int n_prompt, max_tokens, limit;
    uint64_t arrival;    /* submit order: the youngest has the largest */
    struct kvc_sampling sampling;
    uint64_t rng;
    char *stop[SERVE_MAX_STOP];
    int n_stop;
    size_t max_stop;
    uint64_t reserved;   /* KV bytes held while active: the pool's charge for `blocks` */
    /* engine state (under the scheduler's lock) */
    kvc_seq *seq;
    int blocks;          /* pool blocks held (SEQ_BLOCK positions each) */
    int fed;             /* feed tokens in the sequence's cache (or in this step's batch) */
    int prompt_counted;  /* prompt tokens counted in the metrics (a recomputation does not count) */
    int n_gen, pending, has_pending, active, done, cancelled;
    const char *finish;
    char *text;
    size_t len, cap;
    int refs;            /* the caller's and the engine's */
    serve_sched *s;
    serve_req *next;     /* queue / active list */
};

struct serve_sched {
    kvc_ctx *c;
    const kvc_model *m;
    struct serve_params p;
    int n_vocab, n_batch;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t work, progress;
    int stop, closed, started;
    serve_req *qhead, *qtail, *active;
    int n_queued, n_active, block_max;
    uint64_t kv_used, prompt_tokens, gen_tokens, done_count, rejected;
    uint64_t next_arrival, preemptions, recomputed;
    serve_req **order; /* (parallel) active requests by arrival, scratch of grow() */
    double win_t[16];
    uint64_t win_g[16];
    int win_n;
    struct kvc_token_prob *cand; /* (n_vocab) sampling scratch */
    int32_t *btok;
    kvc_seq **bseq;
    serve_req **brun; /* request of each logits row */
};

struct serve_params serve_default_params(void) {
    return (struct serve_params){.parallel = 4, .queue = 64, .ctx_per_seq = 2048, .chunk = 256,
                                 .kv_budget = 256ull << 20};
}

static double mono_sec(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void req_free(serve_req *r) {
    free(r->feed);
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    free(r->text);
    free(r);
}

/* Drop one reference (lock held). */
static void req_unref(serve_req *r) {
    if (--r->refs == 0) req_free(r);
}

/* Blocks that hold n_pos positions (at most the blocks of ctx_per_seq). */
static int blocks_for(const serve_sched *s, int64_t n_pos) {
    int64_t b = (n_pos + SEQ_BLOCK - 1) / SEQ_BLOCK;
    return b > s->block_max ? s->block_max : (int)b;
}

/* The pool's charge for a sequence holding `blocks` blocks: its f16 parts (sinks, recent
 * ring, batch stage) and the codec rows of blocks * SEQ_BLOCK positions. */
static uint64_t charge(const serve_sched *s, int blocks) {
    int64_t pos = (int64_t)blocks * SEQ_BLOCK;
    return kvc_ctx_seq_kv_bytes_at(s->c, s->p.ctx_per_seq, pos > s->p.ctx_per_seq ? s->p.ctx_per_seq : (int)pos);
}

/* Finish a request (lock held): free its sequence and KV bytes at once. */
static void finish(serve_sched *s, serve_req *r, const char *why) {
    if (r->done) return;
    r->done = 1;
    r->finish = why;
    if (r->seq) {
        kvc_seq_free(r->seq);
        r->seq = NULL;
        s->kv_used -= r->reserved;
        r->reserved = 0;
        r->blocks = 0;
    }
    s->done_count++;
}

static int append_text(serve_req *r, const char *p, size_t n) {
    if (r->len + n + 1 > r->cap) {
        size_t cap = r->cap ? r->cap : 256;
        while (cap < r->len + n + 1) cap *= 2;
        char *t = realloc(r->text, cap);
        if (!t) return -1;
        r->text = t;
        r->cap = cap;
    }
    memcpy(r->text + r->len, p, n);
    r->len += n;
    r->text[r->len] = 0;
    return 0;
}

/* After new text: the earliest stop string in the text cuts it (1), else 0. */
static int check_stop(serve_req *r, size_t added) {
    if (!r->n_stop) return 0;
    size_t from = r->len > added + r->max_stop ? r->len - added - r->max_stop : 0;
    size_t best = (size_t)-1;
    for (int i = 0; i < r->n_stop; i++) {
        const char *hit = memmem(r->text + from, r->len - from, r->stop[i], strlen(r->stop[i]));
        if (hit && (size_t)(hit - r->text) < best) best = (size_t)(hit - r->text);
    }
    if (best == (size_t)-1) return 0;
    r->len = best;
    r->text[best] = 0;
    return 1;
}

/* Admit queued requests while there is a free slot and budget (lock held). */
static void admit(serve_sched *s) {
    while (s->qhead && s->n_active < s->p.parallel) {
        serve_req *r = s->qhead;
        if (r->cancelled) {
            s->qhead = r->next;
            if (!s->qhead) s->qtail = NULL;
            s->n_queued--;
            finish(s, r, "cancelled");
            req_unref(r);
            continue;
        }
        /* the prompt's blocks (with a recomputation: prompt + generated tokens) + 1 */
        const int want = blocks_for(s, (int64_t)r->n_feed + SEQ_BLOCK);
        const uint64_t need = charge(s, want);
        if (s->kv_used + need > s->p.kv_budget) break; /* FIFO: wait for blocks */
        kvc_error e;
        s->qhead = r->next;
        if (!s->qhead) s->qtail = NULL;
        s->n_queued--;
        if (kvc_seq_create(s->c, s->p.ctx_per_seq, &r->seq, &e)) {
            finish(s, r, "error");
            req_unref(r);
            continue;
        }
        r->blocks = want;
        r->reserved = need;
        r->fed = 0;
        r->has_pending = 0;
        s->kv_used += need;
        r->active = 1;
        r->next = s->active;
        s->active = r;
        s->n_active++;
    }
}

/* Take r off the active list (lock held). */
static void unlink_active(serve_sched *s, serve_req *r) {
    for (serve_req **pp = &s->active; *pp; pp = &(*pp)->next)
        if (*pp == r) {
            *pp = r->next;
            break;
        }
    r->active = 0;
    s->n_active--;
}

/* Preempt r (lock held): its sequence and blocks go back to the pool at once and it waits at
 * the head of the queue (before every later arrival) to be recomputed: its feed (prompt and
 * the tokens generated so far, the last one not yet evaluated) runs again as a prompt, then
 * generation goes on. Text already produced stays; sampling continues from its state. */
static void preempt(serve_sched *s, serve_req *r) {
    unlink_active(s, r);
    kvc_seq_free(r->seq);
    r->seq = NULL;
    s->kv_used -= r->reserved;
    r->reserved = 0;
    r->blocks = 0;
    r->fed = 0;
    r->has_pending = 0; /* the pending token is feed[n_feed - 1]: it is fed again */
    s->preemptions++;
    serve_req **pp = &s->qhead;
    while (*pp && (*pp)->arrival < r->arrival) pp = &(*pp)->next;
    r->next = *pp;
    *pp = r;
    if (!r->next) s->qtail = r;
    s->n_queued++;
}

/* Give every active sequence that decodes this step the blocks for its next position, oldest
 * first (lock held). When the pool is empty the youngest active sequence is preempted (it may
 * be the one asking): the policy of vLLM's scheduler (preemption by recomputation). */
static void grow(serve_sched *s) {
    int n = 0;
    for (serve_req *r = s->active; r; r = r->next) { /* insertion sort by arrival */
        int i = n++;
        while (i > 0 && s->order[i - 1]->arrival > r->arrival) {
            s->order[i] = s->order[i - 1];
            i--;
        }
        s->order[i] = r;
    }
    for (int i = 0; i < n; i++) {
        serve_req *r = s->order[i];
        if (!r->active || !r->has_pending) continue;
        const int need = blocks_for(s, (int64_t)kvc_seq_n_past(r->seq) + 1);
        while (r->active && r->blocks < need) {
            const uint64_t more = charge(s, r->blocks + 1) - r->reserved;
            if (s->kv_used + more <= s->p.kv_budget) {
                r->blocks++;
                r->reserved += more;
                s->kv_used += more;
                continue;
            }
            serve_req *victim = r;
            for (int j = n - 1; j > i; j--)
                if (s->order[j]->active) {
                    victim = s->order[j];
                    break;
                }
            preempt(s, victim);
        }
    }
}

/* Remove finished or cancelled requests from the active list (lock held). */
static void reap(serve_sched *s) {
    for (serve_req **pp = &s->active; *pp;) {
        serve_req *r = *pp;
        if (r->cancelled) finish(s, r, "cancelled");
        if (r->done) {
            *pp = r->next;
            r->active = 0;
            s->n_active--;
            req_unref(r);
        } else {
            pp = &r->next;
        }
    }
}

/* Next token of request r from its logits row (lock held). */
static void take_token(serve_sched *s, serve_req *r, const float *logits) {
    const int tok = kvc_sample(logits, s->n_vocab, &r->sampling, &r->rng, s->cand);
    if (kvc_token_is_eog(s->m, tok)) {
        finish(s, r, "stop");
        return;
    }
    char piece[256];
    int n = kvc_token_to_text(s->m, tok, piece, sizeof piece);
    if (n < 0) n = 0;
    r->n_gen++;
    s->gen_tokens++;
    if (append_text(r, piece, (size_t)n)) {
        finish(s, r, "error");
        return;
    }
    if (check_stop(r, (size_t)n)) finish(s, r, "stop");
    else if (r->n_gen >= r->max_tokens || kvc_seq_n_past(r->seq) >= r->limit) finish(s, r, "length");
    else {
        r->feed[r->n_feed++] = tok;
        r->pending = tok;
        r->has_pending = 1;
    }
}

static void *engine(void *arg) {
    serve_sched *s = arg;
    kvc_error e;
    pthread_mutex_lock(&s->mu);
    while (!s->stop) {
        reap(s);
        admit(s);
        grow(s);
        if (!s->active) {
            pthread_cond_broadcast(&s->progress);
            pthread_cond_wait(&s->work, &s->mu);
            continue;
        }
        /* the batch: decode tokens first, then prompt chunks in the room left */
        int n = 0, rows = 0;
        for (serve_req *r = s->active; r; r = r->next)
            if (r->has_pending && n < s->n_batch) {
                s->btok[n] = r->pending;
                s->bseq[n++] = r->seq;
                s->brun[rows++] = r;
                r->has_pending = 0;
                r->fed++;
            }
        int n_prompt_tok = 0;
        for (serve_req *r = s->active; r; r = r->next) {
            if (r->has_pending || r->fed >= r->n_feed || n >= s->n_batch) continue;
            int k = r->n_feed - r->fed;
            if (k > s->p.chunk) k = s->p.chunk;
            if (k > s->n_batch - n) k = s->n_batch - n;
            for (int i = 0; i < k; i++) {
                s->btok[n] = r->feed[r->fed + i];
                s->bseq[n++] = r->seq;
            }
            /* prompt tokens seen for the first time count as prompt tokens; the rest is recomputation */
            const int end = r->fed + k < r->n_prompt ? r->fed + k : r->n_prompt;
            const int fresh = end > r->prompt_counted ? end - r->prompt_counted : 0;
            r->prompt_counted += fresh;
            n_prompt_tok += fresh;
            s->recomputed += (uint64_t)(k - fresh);
            r->fed += k;
            s->brun[rows++] = r->fed == r->n_feed ? r : NULL; /* logits only after the whole feed */
        }
        pthread_mutex_unlock(&s->mu);
        struct kvc_batch b = {.n = n, .token = s->btok, .seq = s->bseq, .pos = NULL};
        kvc_status st = kvc_eval_batch(s->c, &b, &e);
        pthread_mutex_lock(&s->mu);
        s->prompt_tokens += (uint64_t)n_prompt_tok;
        const float *lg = kvc_get_logits(s->c);
        for (int i = 0; i < rows; i++) {
            serve_req *r = s->brun[i];
            if (!r || r->done) continue;
            if (st) finish(s, r, "error");
            else if (!r->cancelled) take_token(s, r, lg + (size_t)i * s->n_vocab);
        }
        double t = mono_sec();
        if (s->win_n == 0 || t - s->win_t[(s->win_n - 1) % 16] >= 0.5) {
            s->win_t[s->win_n % 16] = t;
            s->win_g[s->win_n % 16] = s->gen_tokens;
            s->win_n++;
        }
        pthread_cond_broadcast(&s->progress);
    }
    /* shutting down: cancel everything */
    for (serve_req *r = s->active; r; r = r->next) r->cancelled = 1;
    reap(s);
    while (s->qhead) {
        serve_req *r = s->qhead;
        s->qhead = r->next;
        s->n_queued--;
        finish(s, r, "cancelled");
        req_unref(r);
    }
    s->qtail = NULL;
    pthread_cond_broadcast(&s->progress);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

kvc_status serve_create(kvc_ctx *c, const kvc_model *m, const struct serve_params *pp, serve_sched **out,
                        kvc_error *err) {
    *out = NULL;
    struct serve_params p = pp ? *pp : serve_default_params();
    if (p.parallel < 1 || p.parallel > 4096)
        return kvc_fail(err, KVC_ERR_ARG, "serve: --parallel %d outside 1..4096", p.parallel);
    if (p.queue < 0 || p.queue > 1000000)
        return kvc_fail(err, KVC_ERR_ARG, "serve: --queue %d outside 0..1000000", p.queue);
    if (p.chunk < 1) p.chunk = 256;
    struct kvc_kv_info kv;
    kvc_ctx_kv_info(c, &kv);
    if (p.ctx_per_seq < 2 || p.ctx_per_seq > kv.n_ctx)
        return kvc_fail(err, KVC_ERR_ARG, "serve: --ctx-per-seq %d outside 2..%d (the context)", p.ctx_per_seq, kv.n_ctx);
    uint64_t one = kvc_ctx_seq_kv_bytes_at(c, p.ctx_per_seq, p.ctx_per_seq); /* all blocks of one sequence */
    if (one > p.kv_budget)
        return kvc_fail(err, KVC_ERR_ARG,
                        "serve: --kv-budget %llu bytes cannot hold one sequence of --ctx-per-seq %d (%llu bytes)",
                        (unsigned long long)p.kv_budget, p.ctx_per_seq, (unsigned long long)one);
    serve_sched *s = calloc(1, sizeof *s);
    if (!s) return kvc_fail(err, KVC_ERR_NOMEM, "serve: out of memory");
    s->c = c;
    s->m = m;
    s->p = p;
    s->n_vocab = kvc_model_get_info(m)->n_vocab;
    s->n_batch = 512 < p.ctx_per_seq ? 512 : p.ctx_per_seq;
    s->block_max = (p.ctx_per_seq + SEQ_BLOCK - 1) / SEQ_BLOCK;
    s->order = malloc(sizeof *s->order * (size_t)p.parallel);
    s->cand = malloc(sizeof *s->cand * (size_t)s->n_vocab);
    s->btok = malloc(sizeof *s->btok * (size_t)s->n_batch);
    s->bseq = malloc(sizeof *s->bseq * (size_t)s->n_batch);
    s->brun = malloc(sizeof *s->brun * (size_t)(s->n_batch + p.parallel));
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->work, NULL);
    pthread_cond_init(&s->progress, NULL);
    if (!s->cand || !s->btok || !s->bseq || !s->brun || !s->order || pthread_create(&s->thread, NULL, engine, s)) {
        serve_free(s);
        return kvc_fail(err, KVC_ERR_NOMEM, "serve: cannot start the engine");
    }
    s->started = 1;
    *out = s;
    return KVC_OK;
}

void serve_close(serve_sched *s) {
    pthread_mutex_lock(&s->mu);
    s->closed = 1;
    pthread_cond_broadcast(&s->progress);
    pthread_mutex_unlock(&s->mu);
}

void serve_free(serve_sched *s) {
    if (!s) return;
    if (s->started) {
        pthread_mutex_lock(&s->mu);
        s->stop = 1;
        s->closed = 1;
        pthread_cond_broadcast(&s->work);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->thread, NULL);
    }
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->work);
    pthread_cond_destroy(&s->progress);
    free(s->cand);
    free(s->btok);
    free(s->bseq);
    free(s->brun);
    free(s->order);
    free(s);
}

enum serve_submit_status serve_submit(serve_sched *s, const struct serve_req_params *rp, serve_req **out) {
    *out = NULL;
    if (rp->n_prompt < 1 || rp->n_prompt >= s->p.ctx_per_seq) return SERVE_TOO_LONG;
    serve_req *r = calloc(1, sizeof *r);
    if (!r) return SERVE_NOMEM;
    r->limit = s->p.ctx_per_seq;
    int room = s->p.ctx_per_seq - rp->n_prompt + 1; /* as `run`: the last token is not evaluated */
    r->max_tokens = rp->max_tokens > 0 && rp->max_tokens < room ? rp->max_tokens : room;
    r->feed = malloc(sizeof *r->feed * ((size_t)rp->n_prompt + (size_t)r->max_tokens));
    if (!r->feed) {
        free(r);
        return SERVE_NOMEM;
    }
    memcpy(r->feed, rp->prompt, sizeof *r->feed * (size_t)rp->n_prompt);
    r->n_prompt = r->n_feed = rp->n_prompt;
    r->sampling = (struct kvc_sampling){rp->temperature, rp->top_k, rp->top_p};
    r->rng = rp->seed;
    for (int i = 0; i < rp->n_stop && i < SERVE_MAX_STOP; i++) {
        if (!rp->stop[i] || !rp->stop[i][0]) continue;
        if (!(r->stop[r->n_stop] = strdup(rp->stop[i]))) {
            req_free(r);
            return SERVE_NOMEM;
        }
        size_t l = strlen(rp->stop[i]);
        if (l > r->max_stop) r->max_stop = l;
        r->n_stop++;
    }
    r->s = s;
    r->refs = 2;
    pthread_mutex_lock(&s->mu);
    enum serve_submit_status st = SERVE_QUEUED;
    if (s->closed) st = SERVE_CLOSED;
    else if (s->n_queued >= s->p.queue && !(s->n_queued == 0 && s->n_active < s->p.parallel)) st = SERVE_FULL;
    if (st != SERVE_QUEUED) {
        s->rejected++;
        pthread_mutex_unlock(&s->mu);
        req_free(r);
        return st;
    }
    r->arrival = s->next_arrival++;
    if (s->qtail) s->qtail->next = r;
    else s->qhead = r;
    s->qtail = r;
    s->n_queued++;
    pthread_cond_signal(&s->work);
    pthread_mutex_unlock(&s->mu);
    *out = r;
    return SERVE_QUEUED;
}

/* Bytes of text that can go out now: all when done; else not the last max_stop - 1 bytes
 * (they may start a stop string) and not a partial UTF-8 character. */
static size_t ready_bytes(const serve_req *r) {
    if (r->done) return r->len;
    size_t n = r->len > r->max_stop ? r->len - (r->max_stop ? r->max_stop - 1 : 0) : 0;
    if (!r->max_stop) n = r->len;
    /* back off over an incomplete trailing character */
    size_t k = n, cont = 0;
    while (k > 0 && cont < 4 && ((unsigned char)r->text[k - 1] & 0xC0) == 0x80) k--, cont++;
    if (k > 0) {
        unsigned char lead = (unsigned char)r->text[k - 1];
        size_t need = lead >= 0xF0 ? 3 : lead >= 0xE0 ? 2 : lead >= 0xC0 ? 1 : 0;
        if (need > cont) n = k - 1;
    }
    return n;
}

size_t serve_wait(serve_req *r, size_t have, char **buf, size_t *cap, struct serve_progress *pr, int timeout_ms) {
    serve_sched *s = r->s;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    if (timeout_ms >= 0) {
        until.tv_sec += timeout_ms / 1000;
        until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) until.tv_sec++, until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&s->mu);
    while (!r->done && ready_bytes(r) <= have) {
        if (timeout_ms < 0) pthread_cond_wait(&s->progress, &s->mu);
        else if (pthread_cond_timedwait(&s->progress, &s->mu, &until)) break;
    }
    size_t ready = ready_bytes(r), n = ready > have ? ready - have : 0;
    if (n + 1 > *cap) {
        char *t = realloc(*buf, n + 1);
        if (t) {
            *buf = t;
            *cap = n + 1;
        } else {
            n = 0;
        }
    }
    if (n) memcpy(*buf, r->text + have, n);
    if (*buf) (*buf)[n] = 0;
    pr->ready = have + n;
    pr->done = r->done && have + n == r->len;
    pr->finish = r->finish;
    pr->n_prompt = r->n_prompt;
    pr->n_gen = r->n_gen;
    pthread_mutex_unlock(&s->mu);
    return n;
}

void serve_cancel(serve_req *r) {
    serve_sched *s = r->s;
    pthread_mutex_lock(&s->mu);
    r->cancelled = 1;
    pthread_cond_signal(&s->work);
    pthread_mutex_unlock(&s->mu);
}

void serve_release(serve_req *r) {
    if (!r) return;
    serve_sched *s = r->s;
    pthread_mutex_lock(&s->mu);
    req_unref(r);
    pthread_mutex_unlock(&s->mu);
}

void serve_get_stats(serve_sched *s, struct serve_stats *st) {
    pthread_mutex_lock(&s->mu);
    st->active = s->n_active;
    st->queued = s->n_queued;
    st->parallel = s->p.parallel;
    st->queue = s->p.queue;
    st->kv_used = s->kv_used;
    st->kv_budget = s->p.kv_budget;
    st->prompt_tokens = s->prompt_tokens;
    st->gen_tokens = s->gen_tokens;
    st->requests_done = s->done_count;
    st->requests_rejected = s->rejected;
    st->preemptions = s->preemptions;
    st->recomputed_tokens = s->recomputed;
    st->block_positions = SEQ_BLOCK;
    st->blocks_used = 0;
    for (serve_req *r = s->active; r; r = r->next) st->blocks_used += (uint64_t)r->blocks;
    st->tokens_per_s = 0;
    if (s->win_n >= 2) {
        const int last = (s->win_n - 1) % 16;
        const double now = mono_sec();
        int first = s->win_n > 16 ? s->win_n % 16 : 0;
        for (int k = 0; k < 16 && k < s->win_n; k++) { /* oldest sample within 10 s */
            const int i = (first + k) % 16;
            if (now - s->win_t[i] <= 10.0) {
                first = i;
                break;
            }
        }
        if (now - s->win_t[last] <= 10.0 && s->win_t[last] > s->win_t[first])
            st->tokens_per_s = (double)(s->win_g[last] - s->win_g[first]) / (s->win_t[last] - s->win_t[first]);
    }
    pthread_mutex_unlock(&s->mu);
}

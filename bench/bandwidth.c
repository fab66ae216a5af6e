/* bandwidth.c - this machine's memory read bandwidth (kvc_measure_read_bandwidth) for a range
 * of buffer sizes and 1..N threads, median of 7 passes each: the physical limit behind every
 * decode figure (decode reads all weights plus the KV cache once per token).
 *   build/bench/bandwidth [threads (default 2)] */
#include "kvcodec.h"
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    int nt = argc > 1 ? atoi(argv[1]) : 2;
    if (nt < 1 || nt > 256) {
        fprintf(stderr, "usage: %s [threads 1..256]\n", argv[0]);
        return 2;
    }
    static const size_t mib[] = {1, 4, 16, 32, 64, 256, 1024};
    printf("read bandwidth, GB/s (1e9 bytes/s), median of 7 passes\n%10s", "buffer");
    for (int t = 1; t <= nt; t++) printf("  %2d thread%s", t, t > 1 ? "s" : " ");
    printf("\n");
    for (size_t i = 0; i < sizeof mib / sizeof mib[0]; i++) {
        printf("%7zu MiB", mib[i]);
        for (int t = 1; t <= nt; t++) {
            double bw;
            kvc_error e;
            if (kvc_measure_read_bandwidth(mib[i] << 20, t, 7, &bw, &e)) {
                fprintf(stderr, "%s\n", e.msg);
                return 1;
            }
            printf("  %10.1f", bw / 1e9);
        }
        printf("\n");
        fflush(stdout);
    }
    return 0;
}

/*
 * The benchmark's reader through the C ABI (libshmcast.a), the same
 * protocol as its Rust reader role (bench/src/roles.rs, shm_reader):
 *
 *   c_reader NAME lease|copy|lease-meta|copy-meta
 *
 * prints "ready" once subscribed, reads frames until its stdin is closed
 * (waiting in shmcast_subscriber_wait between them, reading one byte per
 * cache line of each, as the Rust reader's `touch` does), then prints one
 * JSON line: frames, secs, cpu, and the latencies from the writer's stamp
 * in a frame's first 8 bytes (CLOCK_MONOTONIC ns) to the read.
 */
#define _GNU_SOURCE
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "shmcast.h"

enum { MAX_LAT = 200000 };
static atomic_int stop;

static void *watch_stdin(void *unused) {
    (void)unused;
    char buf[256];
    while (read(0, buf, sizeof buf) > 0) {
    }
    atomic_store(&stop, 1);
    return NULL;
}

static uint64_t now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static uint64_t wall_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static double secs_of(struct timeval t) { return (double)t.tv_sec + (double)t.tv_usec / 1e6; }

static uint64_t touch(const uint8_t *frame, uint64_t len) {
    uint64_t sum = 0;
    for (uint64_t i = 0; i < len; i += 64) sum += frame[i];
    return sum;
}

static uint64_t stamped(const uint8_t *frame, uint64_t len) {
    uint64_t t = 0;
    if (len >= 8) memcpy(&t, frame, 8);
    return t;
}

static int die(const char *what, int32_t status) {
    char message[512];
    shmcast_last_error_message(message, sizeof message);
    fprintf(stderr, "c_reader: %s failed (%d): %s\n", what, (int)status, message);
    exit(1);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: c_reader NAME lease|copy|lease-meta|copy-meta\n");
        return 2;
    }
    int lease = strncmp(argv[2], "lease", 5) == 0;
    /* -meta: the latency from the frame's timestamp (the publish time, on
     * the wall clock) instead of the writer's stamp in its first bytes. */
    int meta = strstr(argv[2], "-meta") != NULL;
    shmcast_subscriber *sub = NULL;
    int32_t s = shmcast_subscriber_open(argv[1], SHMCAST_SUBSCRIBE_LEASING, 30000, &sub);
    if (s != SHMCAST_OK) die("shmcast_subscriber_open", s);
    uint64_t max = shmcast_subscriber_max_frame_len(sub);
    uint8_t *buf = malloc(max);
    uint64_t *lat = malloc(sizeof(uint64_t) * MAX_LAT);
    size_t nlat = 0;
    pthread_t watcher;
    pthread_create(&watcher, NULL, watch_stdin, NULL);
    printf("ready\n");
    fflush(stdout);

    uint64_t frames = 0, last = shmcast_subscriber_latest_number(sub), sink = 0;
    uint64_t first_at = 0, last_at = 0;
    while (!atomic_load(&stop)) {
        uint64_t newest = 0;
        s = shmcast_subscriber_wait(sub, last, 50, &newest);
        if (s == SHMCAST_ERROR_TIMEOUT) continue;
        if (s != SHMCAST_OK) die("shmcast_subscriber_wait", s);
        last = newest;
        uint64_t sent;
        if (lease) {
            shmcast_lease *l = NULL;
            s = shmcast_subscriber_lease_latest(sub, &l);
            if (s == SHMCAST_ERROR_NO_FRAME) continue;
            if (s != SHMCAST_OK) die("shmcast_subscriber_lease_latest", s);
            const uint8_t *data = NULL;
            uint64_t len = 0;
            shmcast_frame_info info = SHMCAST_FRAME_INFO_INIT;
            s = shmcast_lease_data(l, &data, &len, &info);
            if (s != SHMCAST_OK) die("shmcast_lease_data", s);
            sink += touch(data, len);
            sent = meta ? info.timestamp_ns : stamped(data, len);
            shmcast_lease_release(l);
        } else {
            shmcast_frame_info info = SHMCAST_FRAME_INFO_INIT;
            s = shmcast_subscriber_read_latest(sub, buf, max, &info);
            if (s == SHMCAST_ERROR_NO_FRAME) continue;
            if (s != SHMCAST_OK) die("shmcast_subscriber_read_latest", s);
            sent = meta ? info.timestamp_ns : stamped(buf, info.len);
        }
        uint64_t now = meta ? wall_ns() : now_ns();
        if (nlat < MAX_LAT) lat[nlat++] = now > sent ? now - sent : 0;
        frames++;
        if (!first_at) first_at = now;
        last_at = now;
    }
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    printf("{\"frames\":%" PRIu64 ",\"secs\":%.6f,\"cpu\":%.6f,\"sink\":%" PRIu64 ",\"lat\":[",
           frames ? frames - 1 : 0, (double)(last_at - first_at) / 1e9,
           secs_of(usage.ru_utime) + secs_of(usage.ru_stime), sink);
    for (size_t i = 0; i < nlat; i++) printf(i ? ",%" PRIu64 : "%" PRIu64, lat[i]);
    printf("]}\n");
    fflush(stdout);
    shmcast_subscriber_close(sub);
    return 0;
}

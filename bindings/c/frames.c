/*
 * Publishes frames in one process and checks them, byte for byte, in
 * another: the C ABI end to end.
 *
 *   frames publish NAME COUNT     publish COUNT known frames, 2 ms apart
 *   frames copy NAME COUNT        read them by copy until frame COUNT
 *   frames lease NAME COUNT       the same, through leases in place
 *
 * Every frame a reader sees must be exactly frame N's bytes, metadata and
 * per-frame metadata ("frame N", published with a copy, or set on a loan);
 * it prints "ok: K frames checked" and exits 0, or says what differed.
 */
#define _POSIX_C_SOURCE 200809L /* nanosleep */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shmcast.h"

#ifdef _WIN32
#include <windows.h>
static void sleep_ms(unsigned ms) { Sleep(ms); }
#else
#include <time.h>
static void sleep_ms(unsigned ms) {
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}
#endif

enum { WIDTH = 64, HEIGHT = 48, FRAME_LEN = WIDTH * HEIGHT * 3 };

static uint8_t expected_byte(uint64_t number, size_t i) {
    return (uint8_t)(number * 7u + i * 13u + (i >> 8));
}

static int fail(const char *what, int32_t status) {
    char message[512];
    shmcast_last_error_message(message, sizeof message);
    fprintf(stderr, "%s failed with %d: %s\n", what, (int)status, message);
    return 1;
}

/* Frame n's per-frame metadata: "frame n". */
static int metadata_of(uint64_t n, char *out, size_t size) {
    return snprintf(out, size, "frame %" PRIu64, n);
}

/* 0 when `data` is frame `number`, else a message on stderr and 1. */
static int check(const uint8_t *data, uint64_t len, const shmcast_frame_info *info) {
    char want[32];
    int want_len = metadata_of(info->number, want, sizeof want);
    if (info->metadata_len != (uint64_t)want_len || info->metadata == NULL ||
        memcmp(info->metadata, want, (size_t)want_len) != 0) {
        fprintf(stderr, "frame %" PRIu64 ": metadata of %" PRIu64 " bytes, not \"%s\"\n",
                info->number, info->metadata_len, want);
        return 1;
    }
    if (len != FRAME_LEN || info->width != WIDTH || info->height != HEIGHT ||
        info->format != SHMCAST_FORMAT_RGB24 || info->stride != WIDTH * 3 ||
        info->timestamp_ns != 1000u + info->number) {
        fprintf(stderr, "frame %" PRIu64 ": wrong metadata (len %" PRIu64 ", %ux%u, format %u)\n",
                info->number, len, info->width, info->height, info->format);
        return 1;
    }
    for (size_t i = 0; i < FRAME_LEN; i++) {
        if (data[i] != expected_byte(info->number, i)) {
            fprintf(stderr, "frame %" PRIu64 ": byte %zu is %u, expected %u\n", info->number, i,
                    data[i], expected_byte(info->number, i));
            return 1;
        }
    }
    return 0;
}

static int publish(const char *name, uint64_t count) {
    shmcast_channel_config config = SHMCAST_CHANNEL_CONFIG_INIT;
    config.max_frame_len = FRAME_LEN;
    config.mode = 0644;
    config.max_metadata_len = 32;
    shmcast_publisher *p = NULL;
    int32_t s = shmcast_publisher_create(name, &config, &p);
    if (s != SHMCAST_OK) return fail("shmcast_publisher_create", s);
    shmcast_frame_meta meta = SHMCAST_FRAME_META_INIT;
    meta.width = WIDTH;
    meta.height = HEIGHT;
    meta.format = SHMCAST_FORMAT_RGB24;
    sleep_ms(300); /* readers started at the same time get to open it */
    static uint8_t frame[FRAME_LEN];
    for (uint64_t n = 1; n <= count; n++) {
        meta.timestamp_ns = 1000u + n;
        uint64_t number = 0;
        char metadata[32];
        size_t metadata_len = (size_t)metadata_of(n, metadata, sizeof metadata);
        if (n % 2) { /* odd frames by copy, even ones written in place */
            for (size_t i = 0; i < FRAME_LEN; i++) frame[i] = expected_byte(n, i);
            s = shmcast_publisher_publish_with_metadata(p, &meta, frame, FRAME_LEN,
                                                        (const uint8_t *)metadata, metadata_len,
                                                        &number);
            if (s != SHMCAST_OK) return fail("shmcast_publisher_publish_with_metadata", s);
        } else {
            uint8_t *slot = NULL;
            s = shmcast_publisher_loan(p, FRAME_LEN, &slot);
            if (s != SHMCAST_OK) return fail("shmcast_publisher_loan", s);
            for (size_t i = 0; i < FRAME_LEN; i++) slot[i] = expected_byte(n, i);
            s = shmcast_publisher_set_metadata(p, (const uint8_t *)metadata, metadata_len);
            if (s != SHMCAST_OK) return fail("shmcast_publisher_set_metadata", s);
            s = shmcast_publisher_commit(p, &meta, &number);
            if (s != SHMCAST_OK) return fail("shmcast_publisher_commit", s);
        }
        if (number != n) {
            fprintf(stderr, "published frame %" PRIu64 " as number %" PRIu64 "\n", n, number);
            return 1;
        }
        sleep_ms(2);
    }
    sleep_ms(500); /* the last frame stays readable a while */
    shmcast_publisher_close(p);
    printf("ok: %" PRIu64 " frames published\n", count);
    return 0;
}

static int read_frames(const char *name, uint64_t count, int lease) {
    shmcast_subscriber *sub = NULL;
    int32_t s = shmcast_subscriber_open(name, lease ? SHMCAST_SUBSCRIBE_LEASING : 0, 10000, &sub);
    if (s != SHMCAST_OK) return fail("shmcast_subscriber_open", s);
    uint64_t max = shmcast_subscriber_max_frame_len(sub);
    uint8_t *buf = malloc(max);
    uint64_t seen = 0, checked = 0;
    while (seen < count) {
        uint64_t newest = 0;
        s = shmcast_subscriber_wait(sub, seen, 10000, &newest);
        if (s != SHMCAST_OK) return fail("shmcast_subscriber_wait", s);
        shmcast_frame_info info = SHMCAST_FRAME_INFO_INIT;
        if (lease) {
            shmcast_lease *l = NULL;
            s = shmcast_subscriber_lease_latest(sub, &l);
            if (s != SHMCAST_OK) return fail("shmcast_subscriber_lease_latest", s);
            const uint8_t *data = NULL;
            uint64_t len = 0;
            s = shmcast_lease_data(l, &data, &len, &info);
            if (s != SHMCAST_OK) return fail("shmcast_lease_data", s);
            int bad = check(data, len, &info);
            s = shmcast_lease_release(l);
            if (s != SHMCAST_OK) return fail("shmcast_lease_release", s);
            if (bad) return 1;
        } else {
            uint8_t metadata[32];
            s = shmcast_subscriber_read_latest_with_metadata(sub, buf, max, metadata,
                                                             sizeof metadata, &info);
            if (s != SHMCAST_OK) return fail("shmcast_subscriber_read_latest_with_metadata", s);
            if (check(buf, info.len, &info)) return 1;
        }
        if (info.number <= seen) {
            fprintf(stderr, "frame %" PRIu64 " after frame %" PRIu64 "\n", info.number, seen);
            return 1;
        }
        seen = info.number;
        checked++;
    }
    free(buf);
    shmcast_subscriber_close(sub);
    printf("ok: %" PRIu64 " frames checked (%s), the last %" PRIu64 "\n", checked,
           lease ? "lease" : "copy", seen);
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: frames publish|copy|lease NAME COUNT\n");
        return 2;
    }
    uint64_t count = strtoull(argv[3], NULL, 10);
    if (!strcmp(argv[1], "publish")) return publish(argv[2], count);
    if (!strcmp(argv[1], "copy")) return read_frames(argv[2], count, 0);
    if (!strcmp(argv[1], "lease")) return read_frames(argv[2], count, 1);
    fprintf(stderr, "unknown mode %s\n", argv[1]);
    return 2;
}

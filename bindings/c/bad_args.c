/*
 * Every kind of bad argument through the C ABI: each must give its error
 * code and a message, never a crash. Prints one line per check; exits 1 if
 * any check failed.
 *
 *   bad_args NAME     (a unique name prefix for the segments it makes)
 */
#ifdef __linux__
#define _DEFAULT_SOURCE /* truncate() */
#include <unistd.h>
#endif
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "shmcast.h"

static int failures = 0;

static void expect(const char *what, int32_t got, int32_t want) {
    char message[1024];
    size_t size = shmcast_last_error_message(message, sizeof message);
    int ok = got == want && (want == SHMCAST_OK || size > 1);
    printf("%s %-58s -> %4d %s\n", ok ? "ok  " : "FAIL", what, (int)got,
           want == SHMCAST_OK ? "" : message);
    if (!ok) {
        printf("      expected %d and a message\n", (int)want);
        failures++;
    }
}

#define EXPECT(call, want) expect(#call, (call), (want))

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: bad_args NAME\n");
        return 2;
    }
    char region_name[200], channel_name[200];
    snprintf(region_name, sizeof region_name, "%s-region", argv[1]);
    snprintf(channel_name, sizeof channel_name, "%s-channel", argv[1]);

    /* The message buffer: too small says how large it must be. */
    shmcast_region *r = NULL;
    EXPECT(shmcast_region_open(NULL, 0, &r), SHMCAST_ERROR_INVALID_ARGUMENT);
    char tiny[4];
    size_t needed = shmcast_last_error_message(tiny, sizeof tiny);
    size_t again = shmcast_last_error_message(NULL, 0);
    int cut_ok = needed > sizeof tiny && again == needed && tiny[3] == '\0';
    printf("%s last_error_message into 4 bytes says it needs %zu\n", cut_ok ? "ok  " : "FAIL", needed);
    failures += !cut_ok;

    /* Names. */
    EXPECT(shmcast_region_create(NULL, 64, 0, &r), SHMCAST_ERROR_INVALID_ARGUMENT);
    EXPECT(shmcast_region_create("", 64, 0, &r), SHMCAST_ERROR_INVALID_NAME);
    EXPECT(shmcast_region_create("a/b", 64, 0, &r), SHMCAST_ERROR_INVALID_NAME);
    EXPECT(shmcast_region_create("\xff\xfe", 64, 0, &r), SHMCAST_ERROR_INVALID_NAME);
    EXPECT(shmcast_region_open("no-such-region-anywhere", 0, &r), SHMCAST_ERROR_NOT_FOUND);

    /* NULL out-parameters and handles. */
    EXPECT(shmcast_region_create(region_name, 64, 0, NULL), SHMCAST_ERROR_INVALID_ARGUMENT);
    uint8_t buf[128] = {0};
    EXPECT(shmcast_region_read(NULL, 0, buf, 8), SHMCAST_ERROR_INVALID_ARGUMENT);
    EXPECT(shmcast_region_write(NULL, 0, buf, 8), SHMCAST_ERROR_INVALID_ARGUMENT);
    EXPECT(shmcast_publisher_publish(NULL, NULL, buf, 8, NULL), SHMCAST_ERROR_INVALID_ARGUMENT);
    EXPECT(shmcast_subscriber_wait(NULL, 0, 10, NULL), SHMCAST_ERROR_INVALID_ARGUMENT);
    EXPECT(shmcast_lease_release(NULL), SHMCAST_ERROR_INVALID_ARGUMENT);
    shmcast_region_close(NULL);
    shmcast_publisher_close(NULL);
    shmcast_subscriber_close(NULL);

    /* Zero, absurd and unknown sizes and flags. */
    EXPECT(shmcast_region_create(region_name, 0, 0, &r), SHMCAST_ERROR_INVALID_ARGUMENT);
    EXPECT(shmcast_region_create(region_name, UINT64_MAX, 0, &r), SHMCAST_ERROR_INVALID_ARGUMENT);
    EXPECT(shmcast_region_create(region_name, 64, 0x80, &r), SHMCAST_ERROR_INVALID_ARGUMENT);
    EXPECT(shmcast_region_create(region_name, 64, 0, &r), SHMCAST_OK);
    shmcast_region *taken = NULL;
    EXPECT(shmcast_region_create(region_name, 64, 0, &taken), SHMCAST_ERROR_ALREADY_EXISTS);
    shmcast_region *ro = NULL;
    EXPECT(shmcast_region_open(region_name, 0x10, &ro), SHMCAST_ERROR_INVALID_ARGUMENT);
    EXPECT(shmcast_region_open(region_name, SHMCAST_OPEN_READ_ONLY, &ro), SHMCAST_OK);
    EXPECT(shmcast_region_read(r, 60, buf, 8), SHMCAST_ERROR_OUT_OF_BOUNDS);
    EXPECT(shmcast_region_read(r, UINT64_MAX, buf, 8), SHMCAST_ERROR_OUT_OF_BOUNDS);
    EXPECT(shmcast_region_write(r, 0, NULL, 8), SHMCAST_ERROR_INVALID_ARGUMENT);
    EXPECT(shmcast_region_write(r, 0, buf, SIZE_MAX), SHMCAST_ERROR_INVALID_ARGUMENT);
    EXPECT(shmcast_region_write(ro, 0, buf, 8), SHMCAST_ERROR_READ_ONLY);
    EXPECT(shmcast_region_write(r, 0, (const uint8_t *)"hello", 5), SHMCAST_OK);
    EXPECT(shmcast_region_read(ro, 0, buf, 5), SHMCAST_OK);
    if (memcmp(buf, "hello", 5) != 0) {
        printf("FAIL the read-only view does not see the write\n");
        failures++;
    }
    shmcast_region_close(ro);
    shmcast_region_close(r);

    /* Channel configuration. */
    shmcast_publisher *p = NULL;
    shmcast_channel_config config = SHMCAST_CHANNEL_CONFIG_INIT;
    EXPECT(shmcast_publisher_create(channel_name, NULL, &p), SHMCAST_ERROR_INVALID_ARGUMENT);
    EXPECT(shmcast_publisher_create(channel_name, &config, &p), SHMCAST_ERROR_INVALID_ARGUMENT);
    config.max_frame_len = 64;
    config.size = 4;
    EXPECT(shmcast_publisher_create(channel_name, &config, &p), SHMCAST_ERROR_INVALID_ARGUMENT);
    config.size = sizeof config;
    config.slots = 1000;
    EXPECT(shmcast_publisher_create(channel_name, &config, &p), SHMCAST_ERROR_INVALID_ARGUMENT);
    config.slots = 0;
    config.mode = 0xFFFFFFFFu;
    EXPECT(shmcast_publisher_create(channel_name, &config, &p), SHMCAST_ERROR_INVALID_ARGUMENT);
    config.mode = 0;
    config.max_metadata_len = 65537;
    EXPECT(shmcast_publisher_create(channel_name, &config, &p), SHMCAST_ERROR_INVALID_ARGUMENT);
    config.max_metadata_len = 8;
    config.max_frame_len = UINT64_MAX;
    EXPECT(shmcast_publisher_create(channel_name, &config, &p), SHMCAST_ERROR_INVALID_ARGUMENT);
    config.max_frame_len = 64;
    EXPECT(shmcast_publisher_create(channel_name, &config, &p), SHMCAST_OK);

    /* Publishing. */
    shmcast_frame_meta meta = SHMCAST_FRAME_META_INIT;
    meta.format = 99;
    EXPECT(shmcast_publisher_publish(p, &meta, buf, 8, NULL), SHMCAST_ERROR_INVALID_ARGUMENT);
    meta.format = SHMCAST_FORMAT_RAW;
    meta.reserved = 7;
    EXPECT(shmcast_publisher_publish(p, &meta, buf, 8, NULL), SHMCAST_ERROR_INVALID_ARGUMENT);
    meta.reserved = 0;
    meta.size = 0;
    EXPECT(shmcast_publisher_publish(p, &meta, buf, 8, NULL), SHMCAST_ERROR_INVALID_ARGUMENT);
    meta.size = sizeof meta;
    EXPECT(shmcast_publisher_publish(p, &meta, buf, 65, NULL), SHMCAST_ERROR_TOO_LARGE);
    EXPECT(shmcast_publisher_publish(p, &meta, NULL, 8, NULL), SHMCAST_ERROR_INVALID_ARGUMENT);
    EXPECT(shmcast_publisher_commit(p, &meta, NULL), SHMCAST_ERROR_NOT_HELD);
    EXPECT(shmcast_publisher_abandon(p), SHMCAST_ERROR_NOT_HELD);
    /* Metadata: longer than the channel's 8 bytes, NULL with a length, or
       set with no loan out. */
    if (shmcast_publisher_max_metadata_len(p) != 8) {
        printf("FAIL shmcast_publisher_max_metadata_len is not 8\n");
        failures++;
    }
    EXPECT(shmcast_publisher_publish_with_metadata(p, &meta, buf, 8, buf, 9, NULL),
           SHMCAST_ERROR_TOO_LARGE);
    EXPECT(shmcast_publisher_publish_with_metadata(p, &meta, buf, 8, NULL, 4, NULL),
           SHMCAST_ERROR_INVALID_ARGUMENT);
    EXPECT(shmcast_publisher_set_metadata(p, buf, 4), SHMCAST_ERROR_NOT_HELD);
    EXPECT(shmcast_publisher_set_metadata(NULL, buf, 4), SHMCAST_ERROR_INVALID_ARGUMENT);
    uint8_t *slot = NULL;
    EXPECT(shmcast_publisher_loan(p, 65, &slot), SHMCAST_ERROR_TOO_LARGE);
    EXPECT(shmcast_publisher_loan(p, 8, NULL), SHMCAST_ERROR_INVALID_ARGUMENT);
    EXPECT(shmcast_publisher_loan(p, 8, &slot), SHMCAST_OK);
    EXPECT(shmcast_publisher_set_metadata(p, buf, 9), SHMCAST_ERROR_TOO_LARGE);
    EXPECT(shmcast_publisher_set_metadata(p, buf, 8), SHMCAST_OK);
    uint8_t *second_slot = NULL;
    EXPECT(shmcast_publisher_loan(p, 8, &second_slot), SHMCAST_ERROR_BUSY);
    EXPECT(shmcast_publisher_publish(p, &meta, buf, 8, NULL), SHMCAST_ERROR_BUSY);
    memset(slot, 0xAB, 8);
    uint64_t number = 0;
    EXPECT(shmcast_publisher_commit(p, &meta, &number), SHMCAST_OK);
    EXPECT(shmcast_publisher_commit(p, &meta, &number), SHMCAST_ERROR_NOT_HELD);
    shmcast_publisher *second = NULL;
    EXPECT(shmcast_publisher_create(channel_name, &config, &second), SHMCAST_ERROR_WRITER_ALIVE);

    /* Subscribing. */
    shmcast_subscriber *sub = NULL, *leaser = NULL;
    EXPECT(shmcast_subscriber_open(channel_name, 0x40, 0, &sub), SHMCAST_ERROR_INVALID_ARGUMENT);
    EXPECT(shmcast_subscriber_open("no-such-channel-anywhere", 0, 0, &sub), SHMCAST_ERROR_NOT_FOUND);
    EXPECT(shmcast_subscriber_open("no-such-channel-anywhere", 0, 50, &sub), SHMCAST_ERROR_TIMEOUT);
    EXPECT(shmcast_subscriber_open(channel_name, 0, 0, &sub), SHMCAST_OK);
    EXPECT(shmcast_subscriber_open(channel_name, SHMCAST_SUBSCRIBE_LEASING, 0, &leaser), SHMCAST_OK);
    shmcast_frame_info info = SHMCAST_FRAME_INFO_INIT;
    EXPECT(shmcast_subscriber_read_latest(sub, buf, 4, &info), SHMCAST_ERROR_BUFFER_TOO_SMALL);
    if (info.len != 8) {
        printf("FAIL a buffer too small does not say the frame's length (%u)\n", (unsigned)info.len);
        failures++;
    }
    EXPECT(shmcast_subscriber_read_latest(sub, NULL, 64, NULL), SHMCAST_ERROR_INVALID_ARGUMENT);
    shmcast_frame_info bad_info = {0};
    EXPECT(shmcast_subscriber_read_latest(sub, buf, 64, &bad_info), SHMCAST_ERROR_INVALID_ARGUMENT);
    EXPECT(shmcast_subscriber_read_latest(sub, buf, 64, NULL), SHMCAST_OK);
    uint64_t newest = 99;
    EXPECT(shmcast_subscriber_wait(sub, number, 20, &newest), SHMCAST_ERROR_TIMEOUT);
    if (newest != number) {
        printf("FAIL a timed-out wait gives the newest number (%u, not %u)\n", (unsigned)newest, (unsigned)number);
        failures++;
    }
    shmcast_lease *lease = NULL, *other = NULL;
    EXPECT(shmcast_subscriber_lease_latest(sub, &lease), SHMCAST_ERROR_NOT_LEASING);
    EXPECT(shmcast_subscriber_lease_latest(leaser, NULL), SHMCAST_ERROR_INVALID_ARGUMENT);
    EXPECT(shmcast_subscriber_lease_latest(leaser, &lease), SHMCAST_OK);
    EXPECT(shmcast_subscriber_lease_latest(leaser, &other), SHMCAST_ERROR_BUSY);
    const uint8_t *data = NULL;
    uint64_t len = 0;
    EXPECT(shmcast_lease_data(lease, &data, &len, NULL), SHMCAST_OK);
    if (len != 8 || data[0] != 0xAB) {
        printf("FAIL the lease does not show the committed frame\n");
        failures++;
    }
    EXPECT(shmcast_lease_release(lease), SHMCAST_OK);
    EXPECT(shmcast_lease_release(lease), SHMCAST_ERROR_NOT_HELD);
    EXPECT(shmcast_lease_data(lease, &data, &len, NULL), SHMCAST_ERROR_NOT_HELD);
    if (data != NULL || len != 0) {
        printf("FAIL a failed shmcast_lease_data leaves its out-parameters set\n");
        failures++;
    }
    /* The next lease comes back in the same handle (like a file descriptor). */
    EXPECT(shmcast_subscriber_lease_latest(leaser, &other), SHMCAST_OK);
    if (other != lease) {
        printf("FAIL a subscriber's next lease is not in the same handle\n");
        failures++;
    }
    EXPECT(shmcast_lease_release(other), SHMCAST_OK);
    shmcast_health health;
    EXPECT(shmcast_subscriber_health(sub, 10000, NULL), SHMCAST_ERROR_INVALID_ARGUMENT);
    EXPECT(shmcast_subscriber_health(sub, 10000, &health), SHMCAST_OK);
    if (health != SHMCAST_HEALTH_LIVE) {
        printf("FAIL health is %d with a live publisher\n", (int)health);
        failures++;
    }
    shmcast_publisher_close(p);
    EXPECT(shmcast_subscriber_health(sub, 10000, &health), SHMCAST_OK);
    if (health != SHMCAST_HEALTH_GONE) {
        printf("FAIL health is %d after the publisher closed\n", (int)health);
        failures++;
    }
    shmcast_subscriber_close(leaser);
    shmcast_subscriber_close(sub);

    /* Closing a subscriber ends its lease: with 2 slots, one leased and one
     * latest, the publisher has no free slot until the leaser is closed. */
    char small_name[220];
    snprintf(small_name, sizeof small_name, "%s-two", channel_name);
    config.slots = 2;
    config.max_lease_ms = 60000;
    EXPECT(shmcast_publisher_create(small_name, &config, &p), SHMCAST_OK);
    EXPECT(shmcast_subscriber_open(small_name, SHMCAST_SUBSCRIBE_LEASING, 0, &leaser), SHMCAST_OK);
    EXPECT(shmcast_publisher_publish(p, &meta, buf, 8, NULL), SHMCAST_OK);
    EXPECT(shmcast_subscriber_lease_latest(leaser, &lease), SHMCAST_OK);
    EXPECT(shmcast_publisher_publish(p, &meta, buf, 8, NULL), SHMCAST_OK);
    EXPECT(shmcast_publisher_publish(p, &meta, buf, 8, NULL), SHMCAST_ERROR_ALL_SLOTS_LEASED);
    shmcast_subscriber_close(leaser);
    EXPECT(shmcast_publisher_publish(p, &meta, buf, 8, NULL), SHMCAST_OK);
    shmcast_publisher_close(p);

#ifdef __linux__
    /* Truncated to nothing by another process: the wait, the health and
     * the next publish each say so (they said timeout, live and OK). */
    char cut_name[220], cut_path[300];
    snprintf(cut_name, sizeof cut_name, "%s-cut", channel_name);
    snprintf(cut_path, sizeof cut_path, "/dev/shm/shmcast.%s", cut_name);
    config.slots = 4;
    config.max_frame_len = 65536;
    uint64_t cut_number = 0;
    EXPECT(shmcast_publisher_create(cut_name, &config, &p), SHMCAST_OK);
    EXPECT(shmcast_publisher_publish(p, &meta, buf, 8, &cut_number), SHMCAST_OK);
    EXPECT(shmcast_subscriber_open(cut_name, 0, 0, &sub), SHMCAST_OK);
    if (truncate(cut_path, 0) != 0) {
        printf("FAIL truncating %s\n", cut_path);
        failures++;
    }
    EXPECT(shmcast_subscriber_wait(sub, cut_number, 5000, NULL), SHMCAST_ERROR_TRUNCATED);
    EXPECT(shmcast_subscriber_health(sub, 10000, &health), SHMCAST_OK);
    if (health != SHMCAST_HEALTH_TRUNCATED) {
        printf("FAIL health is %d after a truncation\n", (int)health);
        failures++;
    }
    EXPECT(shmcast_publisher_publish(p, &meta, buf, 8, NULL), SHMCAST_ERROR_TRUNCATED);
    shmcast_subscriber_close(sub);
    shmcast_publisher_close(p);
#endif

    printf("%s: %d failed\n", failures ? "FAILED" : "all bad arguments refused", failures);
    return failures ? 1 : 0;
}

/*
 * A reader that keeps going: start it before or after the service, stop,
 * kill or restart the service, pause its camera; it prints the frame
 * rate and the channel's health once a second until you press Enter (or
 * its input ends).
 *
 *   reader NAME          a line per second: fps, latest frame, health
 *   reader NAME --md5    a line per frame: "frame NUMBER MD5" (the tests'
 *                        check against ffmpeg's framemd5)
 *
 * Build: see CMakeLists.txt (or: cc reader.c md5.c -lshmcast -lpthread).
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "shmcast.h"
#include "md5.h"

#ifdef _WIN32
#include <windows.h>
typedef HANDLE thread_t;
static DWORD WINAPI wait_for_enter(LPVOID stop);
static void start_thread(thread_t *t, volatile int *stop) {
    *t = CreateThread(NULL, 0, wait_for_enter, (LPVOID)stop, 0, NULL);
}
#else
#include <pthread.h>
typedef pthread_t thread_t;
static void *wait_for_enter(void *stop);
static void start_thread(thread_t *t, volatile int *stop) {
    pthread_create(t, NULL, wait_for_enter, (void *)stop);
}
#endif

/* Enter, or the end of input, stops the loop: nothing else does. */
#ifdef _WIN32
static DWORD WINAPI wait_for_enter(LPVOID stop)
#else
static void *wait_for_enter(void *stop)
#endif
{
    int c;
    while ((c = getchar()) != EOF && c != '\n') {
    }
    *(volatile int *)stop = 1;
    return 0;
}

static const char *health_word(shmcast_health h) {
    switch (h) {
    case SHMCAST_HEALTH_LIVE: return "live";
    case SHMCAST_HEALTH_STALLED: return "stalled";
    case SHMCAST_HEALTH_GONE: return "gone";
    case SHMCAST_HEALTH_TRUNCATED: return "truncated";
    default: return "missing";
    }
}

int main(int argc, char **argv) {
    const char *name = argc > 1 ? argv[1] : "demo";
    int per_frame = argc > 2 && strcmp(argv[2], "--md5") == 0;
    static volatile int stop = 0;
    thread_t stopper;
    start_thread(&stopper, &stop);

    /* Needs no channel yet: it waits for one, and follows the name when
     * the service restarts. 0: lease frames when allowed, else copy. */
    shmcast_reader *reader;
    if (shmcast_reader_open(name, 0, 0, &reader) != SHMCAST_OK) {
        char message[512];
        shmcast_last_error_message(message, sizeof message);
        fprintf(stderr, "%s\n", message);
        return 1;
    }
    shmcast_health health = SHMCAST_HEALTH_MISSING;
    unsigned frames = 0;
    uint64_t latest = 0;
    time_t since = time(NULL);
    while (!stop) {
        const uint8_t *data;
        uint64_t len;
        shmcast_frame_info info = {.size = sizeof info};
        int32_t status = shmcast_reader_next(reader, 250, &data, &len, &info);
        if (status == SHMCAST_OK) {
            /* Use the bytes, then release: they count only if the release
             * says the frame stayed whole (a lease can be revoked). */
            char md5[33];
            if (per_frame)
                md5_hex(data, (size_t)len, md5);
            if (shmcast_reader_release(reader) == SHMCAST_OK) {
                frames++;
                latest = info.number;
                if (per_frame)
                    printf("frame %" PRIu64 " %s\n", info.number, md5);
            }
        } else if (status != SHMCAST_ERROR_TIMEOUT) {
            /* This call's trouble; the reader goes on. */
            char message[512];
            shmcast_last_error_message(message, sizeof message);
            printf("error %s\n", message);
        }
        shmcast_health now;
        shmcast_reader_health(reader, &now);
        if (now != health) {
            health = now;
            printf("health %s\n", health_word(health));
        }
        if (!per_frame && time(NULL) != since) {
            printf("%s: %u fps, frame %" PRIu64 ", %s\n", name, frames, latest, health_word(health));
            frames = 0;
            since = time(NULL);
        }
        fflush(stdout);
    }
    shmcast_reader_close(reader);
    printf("done\n");
    return 0;
}

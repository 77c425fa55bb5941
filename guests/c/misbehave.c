/*
 * misbehave: a Wagi (CGI over WASI preview1) module that waits and writes the
 * way a host must survive. The behaviour is chosen by the `mode=` value of
 * QUERY_STRING (default: hello); numbers come from `ms=` and `bytes=`.
 *
 *   hello   200 text/plain `hello`
 *   sleep   nanosleep for ms= milliseconds (default 5000: a relative clock
 *           subscription in poll_oneoff), then 200 `slept <ms>`
 *   until   clock_nanosleep until now + ms= on the clock= clock (`mono`, the
 *           default, or `real`; an absolute clock subscription), then 200
 *           `waited <elapsed ms, by the guest's own monotonic clock>`
 *   poll    poll() stdin with a timeout of ms= (default 5000: an fd and a
 *           clock subscription together; stdin is ready at once), then 200
 *           `poll=<result> revents=<revents>`
 *   write   200 application/octet-stream with bytes= bytes of `x` (default
 *           1 MiB); bytes=0 writes forever, ignoring errors
 *   stderr  bytes= bytes of `e` on stderr (default 1 MiB), then 200 `ok`
 *   other   400 text/plain `unknown mode: ...`
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char chunk[65536];

/* The value of `key` in QUERY_STRING as a number, or `fallback`. */
static long long query_number(const char *key, long long fallback) {
    const char *qs = getenv("QUERY_STRING");
    size_t key_len = strlen(key);
    while (qs != NULL && *qs != '\0') {
        if (strncmp(qs, key, key_len) == 0 && qs[key_len] == '=') {
            return atoll(qs + key_len + 1);
        }
        qs = strchr(qs, '&');
        if (qs != NULL) qs++;
    }
    return fallback;
}

/* Whether QUERY_STRING has `key=value`. */
static int query_is(const char *key, const char *value) {
    const char *qs = getenv("QUERY_STRING");
    size_t key_len = strlen(key), value_len = strlen(value);
    while (qs != NULL && *qs != '\0') {
        if (strncmp(qs, key, key_len) == 0 && qs[key_len] == '=' &&
            strncmp(qs + key_len + 1, value, value_len) == 0 &&
            (qs[key_len + 1 + value_len] == '&' || qs[key_len + 1 + value_len] == '\0')) {
            return 1;
        }
        qs = strchr(qs, '&');
        if (qs != NULL) qs++;
    }
    return 0;
}

static long long now_ms(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int mode_sleep(void) {
    long long ms = query_number("ms", 5000);
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
    printf("Content-Type: text/plain\n\nslept %lld\n", ms);
    return 0;
}

static int mode_until(void) {
    long long ms = query_number("ms", 1000);
    clockid_t clock = query_is("clock", "real") ? CLOCK_REALTIME : CLOCK_MONOTONIC;
    long long started = now_ms(CLOCK_MONOTONIC);
    struct timespec ts;
    clock_gettime(clock, &ts);
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec += 1;
        ts.tv_nsec -= 1000000000L;
    }
    int err = clock_nanosleep(clock, TIMER_ABSTIME, &ts, NULL);
    printf("Content-Type: text/plain\n\nwaited %lld err %d\n", now_ms(CLOCK_MONOTONIC) - started,
           err);
    return 0;
}

static int mode_poll(void) {
    struct pollfd fds[1] = {{0, POLLIN, 0}};
    int result = poll(fds, 1, (int)query_number("ms", 5000));
    printf("Content-Type: text/plain\n\npoll=%d revents=%d\n", result, fds[0].revents);
    return 0;
}

static int mode_write(void) {
    long long total = query_number("bytes", 1 << 20);
    memset(chunk, 'x', sizeof chunk);
    printf("Content-Type: application/octet-stream\n\n");
    if (total == 0) {
        for (;;) fwrite(chunk, 1, sizeof chunk, stdout);
    }
    while (total > 0) {
        size_t n = total < (long long)sizeof chunk ? (size_t)total : sizeof chunk;
        fwrite(chunk, 1, n, stdout);
        total -= (long long)n;
    }
    return 0;
}

static int mode_stderr(void) {
    long long total = query_number("bytes", 1 << 20);
    memset(chunk, 'e', sizeof chunk);
    while (total > 0) {
        size_t n = total < (long long)sizeof chunk ? (size_t)total : sizeof chunk;
        fwrite(chunk, 1, n, stderr);
        total -= (long long)n;
    }
    printf("Content-Type: text/plain\n\nok\n");
    return 0;
}

int main(void) {
    if (query_is("mode", "sleep")) return mode_sleep();
    if (query_is("mode", "until")) return mode_until();
    if (query_is("mode", "poll")) return mode_poll();
    if (query_is("mode", "write")) return mode_write();
    if (query_is("mode", "stderr")) return mode_stderr();
    if (query_is("mode", "hello")) {
        printf("Content-Type: text/plain\n\nhello\n");
        return 0;
    }
    if (getenv("QUERY_STRING") != NULL && strstr(getenv("QUERY_STRING"), "mode=") != NULL) {
        printf("Status: 400 Bad Request\nContent-Type: text/plain\n\nunknown mode: %s\n",
               getenv("QUERY_STRING"));
        return 0;
    }
    printf("Content-Type: text/plain\n\nhello\n");
    return 0;
}

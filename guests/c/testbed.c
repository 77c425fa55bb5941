/*
 * testbed: one Wagi (CGI over WASI preview1) module with many behaviours, for
 * testing a host. The behaviour is chosen by the `mode=` value of QUERY_STRING
 * (default: env). Other query values used by some modes: `code=` (exit),
 * `path=` (file, write; URL-decoded).
 *
 *   env     200 text/plain: `argv[i]=...` lines, then the environment as
 *           sorted `KEY=VALUE` lines
 *   raw     copy stdin to stdout byte for byte (the request body is the
 *           whole CGI output)
 *   echo    200 text/plain: the request body
 *   exit    a valid 200 response, then exit(code) (code= default 1)
 *   trap    __builtin_trap() (wasm `unreachable`)
 *   loop    spin forever
 *   oom     malloc and touch 1 MiB blocks until malloc fails, then abort()
 *   file    200 application/octet-stream: the file at path=; 404 if it
 *           cannot be opened
 *   write   try to create path= (default /newfile); 200 text/plain body
 *           `created <path>` or `error <errno> <message>`
 *   empty   no output, exit 0
 *   stderr  one line on stderr, then a 200 text/plain response
 *   other   400 text/plain `unknown mode: ...`
 *
 * Buffers are static: the wasm32 stack is only 64 KiB.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char **environ;

#define VALUE_MAX 4096

static char value_buf[VALUE_MAX];
static unsigned char io_buf[65536];

static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* URL-decode src[0..len) into dst (NUL-terminated, truncated to cap - 1). */
static void url_decode(const char *src, size_t len, char *dst, size_t cap) {
    size_t out = 0;
    for (size_t i = 0; i < len && out + 1 < cap; i++) {
        char c = src[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%' && i + 2 < len && hex_digit(src[i + 1]) >= 0 &&
                   hex_digit(src[i + 2]) >= 0) {
            c = (char)(hex_digit(src[i + 1]) * 16 + hex_digit(src[i + 2]));
            i += 2;
        }
        dst[out++] = c;
    }
    dst[out] = '\0';
}

/*
 * The URL-decoded value of `key` in QUERY_STRING, in a static buffer (valid
 * until the next call), or NULL if the key is absent.
 */
static const char *query_value(const char *key) {
    const char *qs = getenv("QUERY_STRING");
    size_t key_len = strlen(key);
    if (qs == NULL) return NULL;
    while (*qs != '\0') {
        const char *end = strchr(qs, '&');
        size_t pair_len = end != NULL ? (size_t)(end - qs) : strlen(qs);
        const char *eq = memchr(qs, '=', pair_len);
        size_t name_len = eq != NULL ? (size_t)(eq - qs) : pair_len;
        if (name_len == key_len && memcmp(qs, key, key_len) == 0) {
            if (eq == NULL) {
                value_buf[0] = '\0';
            } else {
                url_decode(eq + 1, pair_len - name_len - 1, value_buf, sizeof value_buf);
            }
            return value_buf;
        }
        if (end == NULL) break;
        qs = end + 1;
    }
    return NULL;
}

static void copy_stream(FILE *in, FILE *out) {
    size_t n;
    while ((n = fread(io_buf, 1, sizeof io_buf, in)) > 0) {
        fwrite(io_buf, 1, n, out);
    }
}

static int compare_strings(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int mode_env(int argc, char **argv) {
    size_t count = 0;
    char **sorted;
    printf("Content-Type: text/plain\n\n");
    for (int i = 0; i < argc; i++) printf("argv[%d]=%s\n", i, argv[i]);
    while (environ != NULL && environ[count] != NULL) count++;
    sorted = malloc((count + 1) * sizeof *sorted);
    if (sorted == NULL) return 1;
    memcpy(sorted, environ, count * sizeof *sorted);
    qsort(sorted, count, sizeof *sorted, compare_strings);
    for (size_t i = 0; i < count; i++) printf("%s\n", sorted[i]);
    free(sorted);
    return 0;
}

static int mode_file(void) {
    const char *path = query_value("path");
    FILE *f = path != NULL ? fopen(path, "rb") : NULL;
    if (f == NULL) {
        printf("Status: 404 Not Found\nContent-Type: text/plain\n\nnot found: %s\n",
               path != NULL ? path : "(no path= given)");
        return 0;
    }
    printf("Content-Type: application/octet-stream\n\n");
    copy_stream(f, stdout);
    fclose(f);
    return 0;
}

static int mode_write(void) {
    const char *given = query_value("path");
    const char *path = given != NULL ? given : "/newfile";
    FILE *f = fopen(path, "wb");
    int err = errno; /* saved before printf, which may change errno */
    if (f != NULL) {
        fputs("written by testbed\n", f);
        err = fclose(f) == 0 ? 0 : errno;
    }
    printf("Content-Type: text/plain\n\n");
    if (f == NULL || err != 0) {
        printf("error %d %s\n", err, strerror(err));
    } else {
        printf("created %s\n", path);
    }
    return 0;
}

static void mode_loop(void) {
    volatile unsigned long counter = 0;
    for (;;) counter++;
}

/* The blocks are chained from a volatile root so that the compiler cannot elide them. */
static void *volatile oom_blocks;

static void mode_oom(void) {
    for (;;) {
        void **block = malloc(1 << 20);
        if (block == NULL) abort();
        memset(block, 0xa5, 1 << 20);
        *block = oom_blocks;
        oom_blocks = block;
    }
}

int main(int argc, char **argv) {
    const char *given = query_value("mode");
    char mode[64];
    snprintf(mode, sizeof mode, "%s", given != NULL ? given : "env");

    if (strcmp(mode, "env") == 0) return mode_env(argc, argv);
    if (strcmp(mode, "raw") == 0) {
        copy_stream(stdin, stdout);
        return 0;
    }
    if (strcmp(mode, "echo") == 0) {
        printf("Content-Type: text/plain\n\n");
        copy_stream(stdin, stdout);
        return 0;
    }
    if (strcmp(mode, "exit") == 0) {
        const char *code = query_value("code");
        printf("Content-Type: text/plain\n\nexiting with %s\n", code != NULL ? code : "1");
        exit(code != NULL ? atoi(code) : 1);
    }
    if (strcmp(mode, "trap") == 0) __builtin_trap();
    if (strcmp(mode, "loop") == 0) mode_loop();
    if (strcmp(mode, "oom") == 0) mode_oom();
    if (strcmp(mode, "file") == 0) return mode_file();
    if (strcmp(mode, "write") == 0) return mode_write();
    if (strcmp(mode, "empty") == 0) return 0;
    if (strcmp(mode, "stderr") == 0) {
        fputs("testbed: a line on stderr\n", stderr);
        printf("Content-Type: text/plain\n\nwrote a line to stderr\n");
        return 0;
    }
    printf("Status: 400 Bad Request\nContent-Type: text/plain\n\nunknown mode: %s\n", mode);
    return 0;
}

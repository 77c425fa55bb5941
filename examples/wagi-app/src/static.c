/*
 * GET /static/... : serves files from the component's file mount (assets/ is
 * mounted at / in the guest). The file path is PATH_INFO, the part of the URL
 * path after /static; a directory path serves its index.html, and /static
 * itself redirects to /static/.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char path[1024];
static unsigned char buf[65536];

struct content_type {
    const char *extension;
    const char *type;
};

static const struct content_type content_types[] = {
    {".html", "text/html; charset=utf-8"},
    {".txt", "text/plain; charset=utf-8"},
    {".css", "text/css"},
    {".js", "text/javascript"},
    {".json", "application/json"},
    {".svg", "image/svg+xml"},
    {".png", "image/png"},
    {".jpg", "image/jpeg"},
};

static const char *content_type_of(const char *name) {
    const char *dot = strrchr(name, '.');
    if (dot != NULL && strchr(dot, '/') == NULL) {
        for (size_t i = 0; i < sizeof content_types / sizeof content_types[0]; i++) {
            if (strcmp(dot, content_types[i].extension) == 0) return content_types[i].type;
        }
    }
    return "application/octet-stream";
}

static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Percent-decodes src into path (PATH_INFO is raw); 0 if it does not fit. */
static int decode_path(const char *src) {
    size_t out = 0;
    for (size_t i = 0; src[i] != '\0'; i++) {
        char c = src[i];
        if (c == '%' && hex_digit(src[i + 1]) >= 0 && hex_digit(src[i + 2]) >= 0) {
            c = (char)(hex_digit(src[i + 1]) * 16 + hex_digit(src[i + 2]));
            i += 2;
        }
        if (out + 1 >= sizeof path) return 0;
        path[out++] = c;
    }
    path[out] = '\0';
    return 1;
}

static int not_found(void) {
    fputs("Status: 404 Not Found\nContent-Type: text/plain\n\nnot found\n", stdout);
    return 0;
}

int main(void) {
    const char *info = getenv("PATH_INFO");
    FILE *f;
    size_t n;
    if (info == NULL || info[0] == '\0') {
        /* /static itself: redirect to /static/ so relative links in index.html work. */
        const char *script = getenv("SCRIPT_NAME");
        printf("Location: %s/\n\n", script != NULL ? script : "");
        return 0;
    }
    if (!decode_path(info) || strstr(path, "..") != NULL) return not_found();
    if (path[strlen(path) - 1] == '/') {
        if (strlen(path) + sizeof "index.html" > sizeof path) return not_found();
        strcat(path, "index.html");
    }
    f = fopen(path, "rb");
    if (f == NULL) return not_found();
    /* The first read fails for a directory: report it as missing. */
    n = fread(buf, 1, sizeof buf, f);
    if (n == 0 && ferror(f)) {
        fclose(f);
        return not_found();
    }
    printf("Content-Type: %s\n\n", content_type_of(path));
    while (n > 0) {
        fwrite(buf, 1, n, stdout);
        n = fread(buf, 1, sizeof buf, f);
    }
    fclose(f);
    return 0;
}

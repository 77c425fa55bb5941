/* POST /echo : answers with the length of the request body, then the body. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned char chunk[65536];

int main(void) {
    const char *method = getenv("REQUEST_METHOD");
    unsigned char *body = NULL;
    size_t len = 0;
    size_t n;
    if (method == NULL || strcmp(method, "POST") != 0) {
        fputs("Status: 405 Method Not Allowed\nAllow: POST\nContent-Type: text/plain\n\n"
              "POST a body to /echo\n",
              stdout);
        return 0;
    }
    while ((n = fread(chunk, 1, sizeof chunk, stdin)) > 0) {
        unsigned char *grown = realloc(body, len + n);
        if (grown == NULL) {
            fputs("Status: 413 Content Too Large\nContent-Type: text/plain\n\nbody too large\n",
                  stdout);
            return 0;
        }
        body = grown;
        memcpy(body + len, chunk, n);
        len += n;
    }
    printf("Content-Type: text/plain\n\nreceived %zu bytes:\n", len);
    if (len > 0) fwrite(body, 1, len, stdout);
    free(body);
    return 0;
}

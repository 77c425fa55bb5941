/* The smallest useful Wagi guest: one write of a complete CGI response. */
#include <unistd.h>

static const char response[] = "Content-Type: text/plain\n\nHello from wasmlet!\n";

int main(void) {
    const char *p = response;
    size_t left = sizeof response - 1;
    while (left > 0) {
        ssize_t n = write(1, p, left);
        if (n <= 0) return 1;
        p += n;
        left -= (size_t)n;
    }
    return 0;
}

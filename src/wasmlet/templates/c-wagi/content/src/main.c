/*
 * {{project-name}}: a Wagi handler. The request comes in as CGI: the body on
 * stdin, the method, path, query and headers in environment variables. The
 * response goes to stdout: header lines, a blank line, then the body.
 */
#include <stdio.h>
#include <stdlib.h>

static const char *env_or(const char *name, const char *fallback) {
    const char *value = getenv(name);
    return value != NULL ? value : fallback;
}

int main(void) {
    printf("Content-Type: text/plain\n\n");
    printf("Hello from {{project-name}}!\n");
    printf("%s %s\n", env_or("REQUEST_METHOD", "GET"), env_or("PATH_INFO", "/"));
    return 0;
}

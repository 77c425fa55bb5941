/* GET /users/:id : greets the user; the id comes from X_PATH_MATCH_ID. */
#include <stdio.h>
#include <stdlib.h>

int main(void) {
    const char *id = getenv("X_PATH_MATCH_ID");
    const char *greeting = getenv("GREETING");
    if (id == NULL || id[0] == '\0') {
        fputs("Status: 400 Bad Request\nContent-Type: text/plain\n\nno user id\n", stdout);
        return 0;
    }
    printf("Content-Type: text/plain\n\n%s, user %s!\n",
           greeting != NULL ? greeting : "Hello", id);
    return 0;
}

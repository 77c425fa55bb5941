/* GET / : lists the routes of this app. */
#include <stdio.h>

int main(void) {
    fputs("Content-Type: text/plain\n"
          "\n"
          "wagi-app routes:\n"
          "  GET  /              this list\n"
          "  GET  /users/:id     greets user :id (GREETING from the component environment)\n"
          "  GET  /static/...    files from assets/ (mounted at / in the guest)\n"
          "  POST /echo          echoes the request body with its length\n"
          "  GET  /rust/...      a Rust guest: method, path and query arguments as JSON\n",
          stdout);
    return 0;
}

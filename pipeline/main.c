/* main.c: `qshard <command>`: parses argv and calls one function per command. */
#include <stdio.h>

int main(int argc, char **argv) {
    (void)argc;
    (void)argv;
    printf("qshard %s\n", QS_VERSION);
    return 0;
}

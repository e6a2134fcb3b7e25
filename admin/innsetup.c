/* postern inn-setup: Debian's own INN configured as a postern site. The work is editing
 * INN's text files, which the shell script installed beside the binary does (postern's
 * lines marked, so that a second run changes nothing and --remove restores every file);
 * this command hands it postern.conf's prefix, so the two cannot disagree. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "admin/admin.h"
#include "util/util.h"

#ifndef POSTERN_LIBEXECDIR
#define POSTERN_LIBEXECDIR "/usr/libexec/postern"
#endif

int adm_cmd_inn_setup(const pn_config *cfg, int argc, char **argv)
{
    /* POSTERN_INN_SETUP: the script in a build tree (tests, the man page build) */
    const char *script = getenv("POSTERN_INN_SETUP");
    if (!script || !*script)
        script = POSTERN_LIBEXECDIR "/inn-setup";
    char **args = calloc((size_t)argc + 4, sizeof *args);
    if (!args)
        return PX_OSERR;
    int n = 0;
    args[n++] = (char *)script;
    args[n++] = "--prefix";
    args[n++] = (char *)cfg->prefix;
    for (int i = 1; i < argc; i++)
        args[n++] = argv[i];
    args[n] = NULL;
    fflush(NULL);
    execv(script, args);
    pu_err("inn-setup: cannot run %s: %s (is the postern package installed completely?)", script, strerror(errno));
    free(args);
    return PX_UNAVAILABLE;
}

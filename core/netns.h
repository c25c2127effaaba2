/* What mw.net's network namespaces share with the heartbeat probes (core/probe.c). */
#ifndef MW_NETNS_H
#define MW_NETNS_H
#include "mw.h"

#define NETNS_MT "mw.netns"

typedef struct { int fd; } netns_t;      /* an open /proc/<pid>/ns/net */

/* A non-blocking TCP socket (IPv4) made inside the namespace nsfd -> fd, or -errno; the
 * loop's thread is back in mw's own namespace on every return. */
int mw_netns_socket(int nsfd);
/* Adds net.request, net.keep and net.beat to the table on top of the stack (luaopen_mw_net). */
void mw_probe_open(lua_State *L);
#endif

/* Portability shims for the compiled streams (Linux, macOS, the BSDs). */
#ifndef CYSOCKETSERVER_COMPAT_H
#define CYSOCKETSERVER_COMPAT_H

#include <sys/types.h>
#include <sys/socket.h>
#include <poll.h>

/* macOS has no MSG_NOSIGNAL (it has SO_NOSIGPIPE instead).  CPython ignores
   SIGPIPE at startup anyway, so a missing flag only matters to embedders;
   sending without it is what the standard library's sendall() does. */
#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0
#endif

/* Every platform we build on has MSG_DONTWAIT; refuse to build a blocking
   recv()/send() with the GIL held somewhere that does not. */
#ifndef MSG_DONTWAIT
#error "cysocketserver._streams needs MSG_DONTWAIT"
#endif

/* EWOULDBLOCK and EAGAIN are the same value on Linux and macOS but not
   everywhere. */
#include <errno.h>
#ifndef EWOULDBLOCK
#define EWOULDBLOCK EAGAIN
#endif

/* Waiting for readiness without losing a signal.

   A signal that lands after the last PyErr_CheckSignals() but before poll()
   starts would leave its Python handler pending until the fd becomes ready
   (Ctrl+C ignored while a handler waits for a silent client).  Where ppoll()
   exists we block signals, run pending handlers, then let ppoll() unblock
   them atomically for the wait: a late signal interrupts it at once.
   Elsewhere (macOS, NetBSD) plain poll(), which has the same small window as the
   standard library's blocking calls. */
#include <signal.h>
#include <time.h>
#include <math.h>
#include <limits.h>

#ifndef CYSS_HAVE_PPOLL  /* -DCYSS_HAVE_PPOLL=0 builds the portable path */
#if defined(__linux__) || defined(__FreeBSD__) || defined(__OpenBSD__)
#define CYSS_HAVE_PPOLL 1
#else
#define CYSS_HAVE_PPOLL 0
#endif
#endif

typedef struct {
    sigset_t old;
    int active;
} cyss_sigstate;

static inline void
cyss_block_signals(cyss_sigstate *st)
{
    st->active = 0;
#if CYSS_HAVE_PPOLL
    sigset_t all;
    sigfillset(&all);
    /* Never hold back the synchronous ones. */
    sigdelset(&all, SIGSEGV);
    sigdelset(&all, SIGBUS);
    sigdelset(&all, SIGFPE);
    sigdelset(&all, SIGILL);
    sigdelset(&all, SIGTRAP);
    sigdelset(&all, SIGSYS);
    sigdelset(&all, SIGABRT);
    st->active = pthread_sigmask(SIG_BLOCK, &all, &st->old) == 0;
#endif
}

static inline void
cyss_restore_signals(cyss_sigstate *st)
{
#if CYSS_HAVE_PPOLL
    if (st->active) {
        pthread_sigmask(SIG_SETMASK, &st->old, NULL);
        st->active = 0;
    }
#endif
}

/* Wait until pfd is ready; timeout in seconds, < 0 for none.  Returns what
   poll() returns (errno set on -1). */
static inline int
cyss_poll1(struct pollfd *pfd, double timeout, cyss_sigstate *st)
{
    if (timeout > 1e9) {
        timeout = 1e9;
    }
#if CYSS_HAVE_PPOLL
    struct timespec ts, *tsp = NULL;
    if (timeout >= 0) {
        double sec = floor(timeout);
        ts.tv_sec = (time_t)sec;
        ts.tv_nsec = (long)((timeout - sec) * 1e9);
        if (ts.tv_nsec > 999999999L) {
            ts.tv_nsec = 999999999L;
        }
        tsp = &ts;
    }
    return ppoll(pfd, 1, tsp, st->active ? &st->old : NULL);
#else
    int ms = -1;
    (void)st;
    if (timeout >= 0) {
        double m = ceil(timeout * 1000.0);
        ms = m >= (double)INT_MAX ? INT_MAX : (int)m;
    }
    return poll(pfd, 1, ms);
#endif
}

#endif /* CYSOCKETSERVER_COMPAT_H */

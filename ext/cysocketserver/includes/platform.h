/* The one platform header of the compiled modules: what they may use on this platform.
 * Where a facility is missing, a stand-in of the same shape keeps the Cython sources
 * compiling; the CYS_HAVE_* flags tell the code at run time which path is real.  Defining
 * CYS_PORTABLE (setup.py does when CYSOCKETSERVER_PORTABLE=1) builds the paths macOS and the
 * BSDs take, so Linux can test them.  Cython code reaches it only through the .pxd files
 * beside it. */
#ifndef CYS_PLATFORM_H
#define CYS_PLATFORM_H

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>
#include <sys/types.h>
#include <sys/socket.h>

#if defined(__linux__) && !defined(CYS_PORTABLE)
#  include <sys/epoll.h>
#  include <sys/eventfd.h>
#  define CYS_HAVE_EPOLL 1
#  define CYS_HAVE_EVENTFD 1
#  define CYS_HAVE_ACCEPT4 1
/* Headers older than Linux 4.5 lack the name; the kernels that know the flag take it. */
#  ifndef EPOLLEXCLUSIVE
#    define EPOLLEXCLUSIVE (1u << 28)
#  endif
#else
#  define CYS_HAVE_EPOLL 0
#  define CYS_HAVE_EVENTFD 0
#  define CYS_HAVE_ACCEPT4 0
typedef union epoll_data { void *ptr; int fd; uint32_t u32; uint64_t u64; } epoll_data_t;
struct epoll_event { uint32_t events; epoll_data_t data; };
#  define EPOLLIN 0x001
#  define EPOLLOUT 0x004
#  define EPOLLERR 0x008
#  define EPOLLHUP 0x010
#  define EPOLLEXCLUSIVE (1u << 28)
#  define EPOLL_CTL_ADD 1
#  define EPOLL_CTL_DEL 2
#  define EPOLL_CTL_MOD 3
#  define EPOLL_CLOEXEC 0
#  define EFD_CLOEXEC 0
#  define EFD_NONBLOCK 0
/* Stand-ins under their own names, so that they never clash with a system's declarations. */
#  define epoll_create1 cys_stub_epoll_create1
#  define epoll_ctl cys_stub_epoll_ctl
#  define epoll_wait cys_stub_epoll_wait
#  define eventfd cys_stub_eventfd
#  define accept4 cys_stub_accept4
static inline int epoll_create1(int flags) { (void)flags; errno = ENOSYS; return -1; }
static inline int epoll_ctl(int e, int op, int fd, struct epoll_event *ev)
{ (void)e; (void)op; (void)fd; (void)ev; errno = ENOSYS; return -1; }
static inline int epoll_wait(int e, struct epoll_event *ev, int n, int t)
{ (void)e; (void)ev; (void)n; (void)t; errno = ENOSYS; return -1; }
static inline int eventfd(unsigned int v, int flags) { (void)v; (void)flags; errno = ENOSYS; return -1; }
static inline int accept4(int fd, struct sockaddr *a, socklen_t *l, int flags)
{ (void)fd; (void)a; (void)l; (void)flags; errno = ENOSYS; return -1; }
#endif

/* splice(2) between a socket and a pipe, and pipes made for it (the relay's bulk path).
   Elsewhere stand-ins that fail with ENOSYS, so that the relay copies instead. */
#if defined(__linux__) && !defined(CYS_PORTABLE)
#  define CYS_HAVE_SPLICE 1
#  ifndef F_SETPIPE_SZ
#    define F_SETPIPE_SZ 1031
#  endif
#else
#  define CYS_HAVE_SPLICE 0
#  define SPLICE_F_MOVE 1
#  define SPLICE_F_NONBLOCK 2
#  define F_SETPIPE_SZ 1031
#  define splice cys_stub_splice
#  define pipe2 cys_stub_pipe2
static inline ssize_t splice(int i, void *io, int o, void *oo, size_t n, unsigned int f)
{ (void)i; (void)io; (void)o; (void)oo; (void)n; (void)f; errno = ENOSYS; return -1; }
static inline int pipe2(int *fds, int flags) { (void)fds; (void)flags; errno = ENOSYS; return -1; }
#endif
#ifndef ENOTSOCK
#  define ENOTSOCK EBADF
#endif

#ifndef SOCK_CLOEXEC
#  define SOCK_CLOEXEC 0
#endif
#ifndef MSG_NOSIGNAL
#  define MSG_NOSIGNAL 0
#endif
/* Every platform we build on has MSG_DONTWAIT.  Where it is missing, refuse to build rather
   than make a recv()/send() that should not wait block with the GIL held. */
#ifndef MSG_DONTWAIT
#  error "cysocketserver needs MSG_DONTWAIT"
#endif
#ifndef EWOULDBLOCK
#  define EWOULDBLOCK EAGAIN
#endif
#ifndef ENFILE
#  define ENFILE EMFILE
#endif
#ifndef ENOBUFS
#  define ENOBUFS ENOMEM
#endif
#ifndef ECONNABORTED
#  define ECONNABORTED EINTR
#endif
#ifndef EPROTO
#  define EPROTO ECONNABORTED
#endif


/* -- the clock --------------------------------------------------------------------------- */

/* The one monotonic clock, the one time.monotonic() reads (so that deadlines computed in
   Python and in C compare): CLOCK_UPTIME_RAW is mach_absolute_time() on macOS. */
#if defined(__APPLE__) && defined(CLOCK_UPTIME_RAW)
#  define CYS_MONOTONIC_CLOCK CLOCK_UPTIME_RAW
#else
#  define CYS_MONOTONIC_CLOCK CLOCK_MONOTONIC
#endif

/* The longest single wait (epoll_wait, poll, ppoll) of any module, in milliseconds: one day.
   A later deadline is reached in several waits; the pure-Python twins use the same value
   (cysocketserver._hubcommon.MAX_WAIT_SECONDS). */
#define CYS_MAX_WAIT_MS 86400000

static inline double
cys_monotonic(void)
{
    struct timespec ts;
    clock_gettime(CYS_MONOTONIC_CLOCK, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline uint64_t
cys_monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CYS_MONOTONIC_CLOCK, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* Seconds (negative: no limit) to a wait's milliseconds: rounded up, so that a wait never
   ends before its deadline, and capped at CYS_MAX_WAIT_MS. */
static inline int
cys_timeout_ms(double seconds)
{
    if (seconds < 0) {
        return -1;
    }
    if (seconds >= CYS_MAX_WAIT_MS / 1000.0) {
        return CYS_MAX_WAIT_MS;
    }
    return (int)ceil(seconds * 1000.0);
}

/* -- waiting for one descriptor without losing a signal ---------------------------------- */

/* A signal that lands after the last PyErr_CheckSignals() but before poll() starts would
   leave its Python handler pending until the fd becomes ready (Ctrl+C ignored while a handler
   waits for a silent client).  Where ppoll() exists we block signals, run pending handlers,
   then let ppoll() unblock them atomically for the wait: a late signal interrupts it at once.
   Elsewhere (macOS, NetBSD) plain poll(), which has the same small window as the standard
   library's blocking calls. */
#ifndef CYSS_HAVE_PPOLL  /* -DCYSS_HAVE_PPOLL=0 builds the portable path */
#  if defined(__linux__) || defined(__FreeBSD__) || defined(__OpenBSD__)
#    define CYSS_HAVE_PPOLL 1
#  else
#    define CYSS_HAVE_PPOLL 0
#  endif
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

/* Wait until pfd is ready; timeout in seconds, < 0 for none (capped at CYS_MAX_WAIT_MS).
   Returns what poll() returns (errno set on -1). */
static inline int
cyss_poll1(struct pollfd *pfd, double timeout, cyss_sigstate *st)
{
#if CYSS_HAVE_PPOLL
    struct timespec ts, *tsp = NULL;
    if (timeout >= 0) {
        double sec;
        if (timeout > CYS_MAX_WAIT_MS / 1000.0) {
            timeout = CYS_MAX_WAIT_MS / 1000.0;
        }
        sec = floor(timeout);
        ts.tv_sec = (time_t)sec;
        ts.tv_nsec = (long)((timeout - sec) * 1e9);
        if (ts.tv_nsec > 999999999L) {
            ts.tv_nsec = 999999999L;
        }
        tsp = &ts;
    }
    return ppoll(pfd, 1, tsp, st->active ? &st->old : NULL);
#else
    (void)st;
    return poll(pfd, 1, cys_timeout_ms(timeout));
#endif
}

#endif /* CYS_PLATFORM_H */

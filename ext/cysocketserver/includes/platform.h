/* What the compiled modules may use on this platform.  Where a facility is missing, a
 * stand-in of the same shape keeps the Cython sources compiling; the CYS_HAVE_* flags
 * tell the code at run time which path is real.  Defining CYS_PORTABLE (setup.py does when
 * CYSOCKETSERVER_PORTABLE=1) builds the paths macOS and the BSDs take, so Linux can test them. */
#ifndef CYS_PLATFORM_H
#define CYS_PLATFORM_H

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <unistd.h>
#include <sys/types.h>
#include <sys/socket.h>

#if defined(__linux__) && !defined(CYS_PORTABLE)
#  include <sys/epoll.h>
#  include <sys/eventfd.h>
#  define CYS_HAVE_EPOLL 1
#  define CYS_HAVE_EVENTFD 1
#  define CYS_HAVE_ACCEPT4 1
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

#ifndef SOCK_CLOEXEC
#  define SOCK_CLOEXEC 0
#endif
#ifndef MSG_NOSIGNAL
#  define MSG_NOSIGNAL 0
#endif
#ifndef MSG_DONTWAIT
#  define MSG_DONTWAIT 0
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

#endif

# The system calls the compiled modules make, declared once for all of them, from the one
# platform header (includes/platform.h).  No module declares a system call of its own.  The
# clock is in clock.pxd; the error convention of cdef functions is written in errors.pxd.
from libc.stdint cimport uint32_t, uint64_t

cdef extern from "includes/platform.h" nogil:
    const int CYS_HAVE_EPOLL
    const int CYS_HAVE_EVENTFD
    const int CYS_HAVE_ACCEPT4

    ctypedef unsigned int socklen_t
    ctypedef unsigned short sa_family_t

    struct sockaddr:
        sa_family_t sa_family

    struct sockaddr_storage:
        sa_family_t ss_family

    # poll(2)
    struct pollfd:
        int fd
        short events
        short revents
    ctypedef unsigned long nfds_t
    const short POLLIN
    const short POLLOUT
    const short POLLERR
    const short POLLHUP
    const short POLLNVAL
    int poll(pollfd *fds, nfds_t nfds, int timeout)

    # epoll(7), stand-ins elsewhere
    ctypedef union epoll_data_t:
        void *ptr
        int fd
        uint32_t u32
        uint64_t u64
    struct epoll_event:
        uint32_t events
        epoll_data_t data
    const uint32_t EPOLLIN
    const uint32_t EPOLLOUT
    const uint32_t EPOLLERR
    const uint32_t EPOLLHUP
    const uint32_t EPOLLEXCLUSIVE   # accepted by EPOLL_CTL_ADD only
    const int EPOLL_CTL_ADD
    const int EPOLL_CTL_DEL
    const int EPOLL_CTL_MOD
    const int EPOLL_CLOEXEC
    int epoll_create1(int flags)
    int epoll_ctl(int epfd, int op, int fd, epoll_event *event)
    int epoll_wait(int epfd, epoll_event *events, int maxevents, int timeout)

    # wake-ups
    const int EFD_CLOEXEC
    const int EFD_NONBLOCK
    int eventfd(unsigned int initval, int flags)
    int pipe(int *fds)
    ssize_t read(int fd, void *buf, size_t count)
    ssize_t write(int fd, const void *buf, size_t count)
    int close(int fd)

    # descriptors
    const int F_GETFL
    const int F_SETFL
    const int F_SETFD
    const int FD_CLOEXEC
    const int O_NONBLOCK
    int fcntl(int fd, int cmd, ...)

    # sockets
    const int SOCK_CLOEXEC
    const int MSG_DONTWAIT
    const int MSG_NOSIGNAL
    int accept(int fd, sockaddr *addr, socklen_t *addrlen)
    int accept4(int fd, sockaddr *addr, socklen_t *addrlen, int flags)
    ssize_t recv(int fd, void *buf, size_t n, int flags)
    ssize_t send(int fd, const void *buf, size_t n, int flags)

    # the relay: end of stream, and splice(2) through a pipe (CYS_HAVE_SPLICE: Linux)
    const int SHUT_WR
    int shutdown(int fd, int how)
    const int CYS_HAVE_SPLICE
    const unsigned int SPLICE_F_MOVE
    const unsigned int SPLICE_F_NONBLOCK
    const int F_SETPIPE_SZ
    const int O_CLOEXEC
    ssize_t splice(int fd_in, void *off_in, int fd_out, void *off_out, size_t n, unsigned int flags)
    int pipe2(int *fds, int flags)

    # errno values the loop tells apart
    const int EINTR
    const int EAGAIN
    const int EWOULDBLOCK
    const int EMFILE
    const int ENFILE
    const int ENOBUFS
    const int ENOMEM
    const int ECONNABORTED
    const int EPROTO
    const int EINVAL
    const int ENOSYS
    const int ENOTSOCK

cdef extern from "<netinet/in.h>" nogil:
    struct in_addr:
        uint32_t s_addr
    struct in6_addr:
        unsigned char s6_addr[16]
    struct sockaddr_in:
        sa_family_t sin_family
        unsigned short sin_port
        in_addr sin_addr
    struct sockaddr_in6:
        sa_family_t sin6_family
        unsigned short sin6_port
        uint32_t sin6_flowinfo
        in6_addr sin6_addr
        uint32_t sin6_scope_id
    const int AF_INET
    const int AF_INET6
    const int INET_ADDRSTRLEN
    const int INET6_ADDRSTRLEN
    unsigned short ntohs(unsigned short)
    uint32_t ntohl(uint32_t)

cdef extern from "<arpa/inet.h>" nogil:
    const char *inet_ntop(int af, const void *src, char *dst, socklen_t size)

cdef extern from "includes/platform.h" nogil:
    ssize_t recvfrom(int fd, void *buf, size_t n, int flags, sockaddr *addr, socklen_t *addrlen)

    # Waiting for one descriptor without losing a signal (see platform.h): block signals, run
    # the pending handlers, then ppoll() unblocks them for the wait (plain poll() elsewhere).
    ctypedef struct cyss_sigstate:
        int active
    void cyss_block_signals(cyss_sigstate *st)
    void cyss_restore_signals(cyss_sigstate *st)
    # Seconds, negative for none; returns what poll() returns (errno set on -1).
    int cyss_poll1(pollfd *pfd, double timeout, cyss_sigstate *st)

# What the load client (_loadgen) needs beyond syscalls.pxd: making and connecting sockets,
# socket options, and the errno values it tells apart.  Plain POSIX, declared from the system
# headers directly.
from cysocketserver.includes.syscalls cimport sockaddr, socklen_t

cdef extern from "<sys/socket.h>" nogil:
    const int SOCK_STREAM
    const int SOCK_DGRAM
    const int SOL_SOCKET
    const int SO_ERROR
    const int SO_LINGER
    const int SO_REUSEADDR
    const int SO_RCVBUF
    const int SO_SNDBUF
    const int SHUT_WR
    const int SOMAXCONN
    struct linger:
        int l_onoff
        int l_linger
    int socket(int domain, int type, int protocol)
    int connect(int fd, const sockaddr *addr, socklen_t addrlen)
    int bind(int fd, const sockaddr *addr, socklen_t addrlen)
    int listen(int fd, int backlog)
    int shutdown(int fd, int how)
    int setsockopt(int fd, int level, int name, const void *value, socklen_t length)
    int getsockopt(int fd, int level, int name, void *value, socklen_t *length)
    ssize_t sendto(int fd, const void *buf, size_t n, int flags,
                   const sockaddr *addr, socklen_t addrlen)

cdef extern from "<netinet/in.h>" nogil:
    const int IPPROTO_TCP
    unsigned short htons(unsigned short)

cdef extern from "<netinet/tcp.h>" nogil:
    const int TCP_NODELAY

cdef extern from "<errno.h>" nogil:
    const int EINPROGRESS
    const int ECONNREFUSED
    const int ECONNRESET
    const int EPIPE
    const int EADDRNOTAVAIL
    const int EADDRINUSE
    const int ENOTCONN
    const int ETIMEDOUT
    const int EHOSTUNREACH
    const int ENETUNREACH

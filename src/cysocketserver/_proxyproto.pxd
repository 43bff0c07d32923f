# The C types of the PROXY protocol parser, _proxyproto.py, when setup.py compiles it with Cython
# (pure Python mode: this file is read only by the compiler; the .py runs unchanged without it).
# Typed `bytes` are indexed in C; the CRC32c table is a C array.
import cython
from libc.stdint cimport uint32_t

cdef int V1, V2
cdef Py_ssize_t V1_MAX, V2_MAX
cdef int PP2_TYPE_CRC32C
cdef bytes V2_SIGNATURE, _V1_PREFIX
cdef dict FAMILIES, TYPES, ADDRESS_BLOCK
cdef uint32_t _CRC_TABLE[256]
cdef uint32_t _ALL_ONES


@cython.locals(crc=uint32_t, i=Py_ssize_t, byte=cython.uchar)
cdef uint32_t _crc32c(bytes data, Py_ssize_t zero_from, Py_ssize_t zero_to) except? 0

cpdef Py_ssize_t scan(data, int accepted) except -1

@cython.locals(size=Py_ssize_t, total=Py_ssize_t, end=Py_ssize_t)
cdef Py_ssize_t _scan(bytes raw, int accepted) except -1

@cython.locals(raw=bytes, length=Py_ssize_t)
cpdef parse(header, int accepted)

cdef _port(bytes text)

cdef _host(family, bytes text)

@cython.locals(fields=list, protocol=bytes)
cdef _parse_v1(bytes header)

cdef _unix_path(bytes raw)

@cython.locals(command=int, family_code=int, type_code=int, block=Py_ssize_t, end=Py_ssize_t,
               position=Py_ssize_t, start=Py_ssize_t, size=Py_ssize_t, kind=int, tlvs=list,
               checksums=list, sent=uint32_t, at=Py_ssize_t)
cdef _parse_v2(bytes header)

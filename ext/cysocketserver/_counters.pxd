# The byte meter the compiled streams add to (one per connection), declared for cimport.

cdef class Meter:
    cdef public unsigned long long received
    cdef public unsigned long long sent

# OpenMP is optional at compile time: without it these stand-ins make prange serial and
# the same kernel source builds anyway (the shape of scikit-learn's _openmp_helpers.pxd).
cdef extern from *:
    """
    #ifdef _OPENMP
    #include <omp.h>
    #define QL_OPENMP 1
    #else
    #define QL_OPENMP 0
    static int omp_get_max_threads(void) { return 1; }
    #endif
    """
    bint QL_OPENMP
    int omp_get_max_threads() noexcept nogil

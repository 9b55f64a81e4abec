#include <cblas.h>

/* LAPACK's Cholesky factorization and inverse from the same OpenBLAS (its f77blas.h declares them
   identically; that header is not included to keep the imported surface small). Used by GPTQ. */
int spotrf_(char *uplo, int *n, float *a, int *lda, int *info);
int spotri_(char *uplo, int *n, float *a, int *lda, int *info);
int strtri_(char *uplo, char *diag, int *n, float *a, int *lda, int *info);

// The native cpu engine: OpenBLAS's sgemm for every matmul and C kernels for the other hot ops,
// parallel over every core with OpenMP. Each function fills output arrays the caller allocated (the
// TypeScript side in engine.ts checks shapes first), so no memory is owned here.
//
// Determinism: every output element is computed by one thread, whose loop order does not depend on
// the thread count; reductions across rows (sumRows, LayerNorm's dGamma/dBeta, the embedding's
// backward) split by columns and add rows in ascending order. Products are split by blocks of C,
// never along K (parallel_sgemm). So for a given machine, shape and thread count a result is the
// same bits every time, in any thread of the process.
// Compiled with -ffp-contract=off: no fused multiply-adds the source does not write, which keeps
// AdamW and the int8 quantizer bit for bit equal to the reference ops.
#include <cblas.h>
#include <math.h>
#include <node_api.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef OPENBLAS_VERSION
#define OPENBLAS_VERSION "OpenBLAS"
#endif

extern void openblas_set_num_threads(int);
extern char *openblas_get_config(void);

// below this many elements an elementwise op runs on the calling thread: waking the team costs more
#define PARALLEL_MIN 32768

static napi_value fail(napi_env env, const char *message) {
  napi_throw_type_error(env, NULL, message);
  return NULL;
}

typedef struct {
  void *data;
  size_t length;
  napi_typedarray_type type;
} array_arg;

static int get_array(napi_env env, napi_value value, napi_typedarray_type type, array_arg *out) {
  bool is_typed = false;
  if (napi_is_typedarray(env, value, &is_typed) != napi_ok || !is_typed) return 0;
  napi_value buffer;
  size_t offset;
  if (napi_get_typedarray_info(env, value, &out->type, &out->length, &out->data, &buffer, &offset) != napi_ok)
    return 0;
  return out->type == type;
}

static int get_double(napi_env env, napi_value value, double *out) {
  return napi_get_value_double(env, value, out) == napi_ok;
}

static int get_long(napi_env env, napi_value value, int64_t *out) {
  return napi_get_value_int64(env, value, out) == napi_ok && *out >= 0;
}

#define ARGS(n)                                                                                      \
  size_t argc = n;                                                                                   \
  napi_value argv[n];                                                                                \
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != n)                 \
    return fail(env, "wrong number of arguments");
#define F32(name, i)                                                                                 \
  array_arg name##_arg;                                                                              \
  if (!get_array(env, argv[i], napi_float32_array, &name##_arg))                                    \
    return fail(env, "argument " #i " (" #name ") must be a Float32Array");                          \
  float *name = (float *)name##_arg.data;                                                            \
  size_t name##_length = name##_arg.length;                                                          \
  (void)name##_length;
#define I8(name, i)                                                                                  \
  array_arg name##_arg;                                                                              \
  if (!get_array(env, argv[i], napi_int8_array, &name##_arg))                                       \
    return fail(env, "argument " #i " (" #name ") must be an Int8Array");                             \
  int8_t *name = (int8_t *)name##_arg.data;                                                          \
  size_t name##_length = name##_arg.length;                                                          \
  (void)name##_length;
#define DBL(name, i)                                                                                 \
  double name;                                                                                       \
  if (!get_double(env, argv[i], &name)) return fail(env, "argument " #i " (" #name ") must be a number");
#define LONG(name, i)                                                                                \
  int64_t name;                                                                                      \
  if (!get_long(env, argv[i], &name))                                                                \
    return fail(env, "argument " #i " (" #name ") must be a non-negative integer");
#define NEED(condition)                                                                              \
  if (!(condition)) return fail(env, "array lengths do not match the sizes: " #condition);

static napi_value undefined(napi_env env) {
  napi_value result;
  napi_get_undefined(env, &result);
  return result;
}

static napi_value number(napi_env env, double value) {
  napi_value result;
  napi_create_double(env, value, &result);
  return result;
}

// --- configuration ----------------------------------------------------------------------------

static int thread_count = 1;

static napi_value set_threads(napi_env env, napi_callback_info info) {
  ARGS(1)
  LONG(threads, 0)
  if (threads < 1) return fail(env, "threads must be at least 1");
  thread_count = (int)threads;
  omp_set_num_threads(thread_count);
  // OpenBLAS itself always runs one thread: the parallel split is ours (parallel_sgemm)
  openblas_set_num_threads(1);
  return undefined(env);
}

static napi_value describe(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value result, value;
  napi_create_object(env, &result);
  napi_create_string_utf8(env, OPENBLAS_VERSION, NAPI_AUTO_LENGTH, &value);
  napi_set_named_property(env, result, "blas", value);
  napi_create_string_utf8(env, openblas_get_config(), NAPI_AUTO_LENGTH, &value);
  napi_set_named_property(env, result, "blasConfig", value);
  napi_create_int32(env, thread_count, &value);
  napi_set_named_property(env, result, "threads", value);
  napi_create_int32(env, omp_get_num_procs(), &value);
  napi_set_named_property(env, result, "processors", value);
  return result;
}

// --- matmul -----------------------------------------------------------------------------------

// Below this many multiply-adds a product runs in one piece: a 256^3 product (16.8M) in two pieces
// ran at 47-61 GFLOP/s against 79-80 in one (waking the second thread and packing B twice cost more
// than the half it saved); 1024^3 in two pieces ran 1.7x one (bench/RESULTS.md, cpu backend).
#define GEMM_SPLIT_MIN 33554432.0

// C = alpha op(A) op(B), split into `thread_count` pieces along C's longer side, one single-threaded
// OpenBLAS call per piece on a team of thread_count threads. OpenBLAS's own threading decides from
// process-wide state (its thread count, the calling thread's OpenMP settings) that other threads of
// the process change, and a row's bits depend on the blocks it is computed in; with the split made
// here they depend only on the shape and the thread count. Inside an active OpenMP region OpenBLAS
// runs on the calling thread; for one piece the calling thread's OpenMP thread count is 1 around
// the call, which OpenBLAS reads and follows.
static void parallel_sgemm(int trans_a, int trans_b, int64_t m, int64_t n, int64_t k, float alpha,
                           const float *a, int64_t lda, const float *b, int64_t ldb, float *c, int64_t ldc) {
  const CBLAS_TRANSPOSE ta = trans_a ? CblasTrans : CblasNoTrans, tb = trans_b ? CblasTrans : CblasNoTrans;
  const int by_rows = m >= n;
  const int64_t extent = by_rows ? m : n;
  int64_t pieces = (double)m * (double)n * (double)k < GEMM_SPLIT_MIN ? 1 : thread_count;
  if (pieces > extent) pieces = extent;
  if (pieces <= 1) {
    // on the calling thread alone, without waking the team: OpenBLAS reads this thread's OpenMP
    // thread count and, told 1, runs on it
    omp_set_num_threads(1);
    cblas_sgemm(CblasRowMajor, ta, tb, (int)m, (int)n, (int)k, alpha, a, (int)lda, b, (int)ldb, 0.0f, c,
                (int)ldc);
    omp_set_num_threads(thread_count);
    return;
  }
#pragma omp parallel for schedule(static, 1) num_threads(thread_count)
  for (int64_t piece = 0; piece < pieces; piece++) {
    const int64_t start = extent * piece / pieces, end = extent * (piece + 1) / pieces;
    if (end == start) continue;
    // rows start..end of C take the same rows of op(A); columns start..end the same columns of op(B)
    const float *a_piece = by_rows ? (trans_a ? a + start : a + start * lda) : a;
    const float *b_piece = by_rows ? b : (trans_b ? b + start * ldb : b + start);
    float *c_piece = by_rows ? c + start * ldc : c + start;
    const int64_t rows = by_rows ? end - start : m, columns = by_rows ? n : end - start;
    cblas_sgemm(CblasRowMajor, ta, tb, (int)rows, (int)columns, (int)k, alpha, a_piece, (int)lda, b_piece,
                (int)ldb, 0.0f, c_piece, (int)ldc);
  }
}

// c[m,n] = op(a)[m,k] op(b)[k,n]; a stored [m,k] or [k,m] (transA), b [k,n] or [n,k] (transB)
static napi_value matmul(napi_env env, napi_callback_info info) {
  ARGS(8)
  F32(a, 0)
  F32(b, 1)
  F32(c, 2)
  LONG(m, 3)
  LONG(k, 4)
  LONG(n, 5)
  bool trans_a, trans_b;
  napi_get_value_bool(env, argv[6], &trans_a);
  napi_get_value_bool(env, argv[7], &trans_b);
  NEED(a_length == (size_t)(m * k) && b_length == (size_t)(k * n) && c_length == (size_t)(m * n))
  if (m == 0 || n == 0) return undefined(env);
  if (k == 0) {
    memset(c, 0, sizeof(float) * m * n);
    return undefined(env);
  }
  parallel_sgemm(trans_a, trans_b, m, n, k, 1.0f, a, trans_a ? m : k, b, trans_b ? k : n, c, n);
  return undefined(env);
}

// --- elementwise ------------------------------------------------------------------------------

static napi_value bias_add(napi_env env, napi_callback_info info) {
  ARGS(3)
  F32(x, 0)
  F32(bias, 1)
  F32(y, 2)
  NEED(bias_length > 0 && x_length % bias_length == 0 && y_length == x_length)
  const int64_t n = (int64_t)bias_length, rows = (int64_t)(x_length / bias_length);
#pragma omp parallel for schedule(static) if (x_length >= PARALLEL_MIN)
  for (int64_t i = 0; i < rows; i++)
    for (int64_t j = 0; j < n; j++) y[i * n + j] = x[i * n + j] + bias[j];
  return undefined(env);
}

static napi_value relu(napi_env env, napi_callback_info info) {
  ARGS(2)
  F32(x, 0)
  F32(y, 1)
  NEED(y_length == x_length)
#pragma omp parallel for simd schedule(static) if (x_length >= PARALLEL_MIN)
  for (size_t i = 0; i < x_length; i++) y[i] = x[i] > 0 ? x[i] : 0.0f;
  return undefined(env);
}

static napi_value relu_backward(napi_env env, napi_callback_info info) {
  ARGS(3)
  F32(dy, 0)
  F32(x, 1)
  F32(dx, 2)
  NEED(dy_length == x_length && dx_length == x_length)
#pragma omp parallel for simd schedule(static) if (x_length >= PARALLEL_MIN)
  for (size_t i = 0; i < x_length; i++) dx[i] = x[i] > 0 ? dy[i] : 0.0f;
  return undefined(env);
}

static napi_value add(napi_env env, napi_callback_info info) {
  ARGS(3)
  F32(a, 0)
  F32(b, 1)
  F32(y, 2)
  NEED(b_length == a_length && y_length == a_length)
#pragma omp parallel for simd schedule(static) if (a_length >= PARALLEL_MIN)
  for (size_t i = 0; i < a_length; i++) y[i] = a[i] + b[i];
  return undefined(env);
}

// y += alpha x with alpha rounded to float32 and the sum rounded once, as the reference does
static napi_value axpy(napi_env env, napi_callback_info info) {
  ARGS(3)
  DBL(alpha, 0)
  F32(x, 1)
  F32(y, 2)
  NEED(y_length == x_length)
  const float a = (float)alpha;
#pragma omp parallel for simd schedule(static) if (x_length >= PARALLEL_MIN)
  for (size_t i = 0; i < x_length; i++) y[i] = (float)((double)y[i] + (double)a * (double)x[i]);
  return undefined(env);
}

static napi_value scale(napi_env env, napi_callback_info info) {
  ARGS(3)
  F32(x, 0)
  DBL(alpha, 1)
  F32(y, 2)
  NEED(y_length == x_length)
  const float a = (float)alpha;
#pragma omp parallel for simd schedule(static) if (x_length >= PARALLEL_MIN)
  for (size_t i = 0; i < x_length; i++) y[i] = a * x[i];
  return undefined(env);
}

// GELU (tanh approximation) as x * sigmoid(2u), u = k (x + c x^3), in float32
#define GELU_K 0.7978845608028654f
#define GELU_C 0.044715f

static napi_value gelu(napi_env env, napi_callback_info info) {
  ARGS(2)
  F32(x, 0)
  F32(y, 1)
  NEED(y_length == x_length)
#pragma omp parallel for schedule(static) if (x_length >= PARALLEL_MIN / 4)
  for (size_t i = 0; i < x_length; i++) {
    const float v = x[i];
    y[i] = v / (1.0f + expf(-2.0f * GELU_K * (v + GELU_C * v * v * v)));
  }
  return undefined(env);
}

static napi_value gelu_backward(napi_env env, napi_callback_info info) {
  ARGS(3)
  F32(dy, 0)
  F32(x, 1)
  F32(dx, 2)
  NEED(dy_length == x_length && dx_length == x_length)
#pragma omp parallel for schedule(static) if (x_length >= PARALLEL_MIN / 4)
  for (size_t i = 0; i < x_length; i++) {
    const float v = x[i];
    const float u = GELU_K * (v + GELU_C * v * v * v);
    const float s = 1.0f / (1.0f + expf(-2.0f * u));
    const float one_minus_s = 1.0f / (1.0f + expf(2.0f * u));
    const float slope = fabsf(v) > 30.0f ? 0.0f : 2.0f * v * GELU_K * (1.0f + 3.0f * GELU_C * v * v) * s * one_minus_s;
    dx[i] = dy[i] * (s + slope);
  }
  return undefined(env);
}

// --- reductions -------------------------------------------------------------------------------

// columns a thread owns in a column-split reduction: whole cache lines, so no two threads share one
#define COLUMN_BLOCK 64

// y[n] = sum over rows of x[m, n], float64 sums in ascending row order; divided by m when mean
static void sum_rows_into(const float *x, float *y, int64_t m, int64_t n, int mean) {
  const int64_t blocks = (n + COLUMN_BLOCK - 1) / COLUMN_BLOCK;
#pragma omp parallel for schedule(static) if (m * n >= PARALLEL_MIN)
  for (int64_t block = 0; block < blocks; block++) {
    double acc[COLUMN_BLOCK] = {0};
    const int64_t j0 = block * COLUMN_BLOCK;
    const int64_t width = n - j0 < COLUMN_BLOCK ? n - j0 : COLUMN_BLOCK;
    for (int64_t i = 0; i < m; i++)
      for (int64_t j = 0; j < width; j++) acc[j] += x[i * n + j0 + j];
    for (int64_t j = 0; j < width; j++) y[j0 + j] = mean ? (float)((float)acc[j] / (double)m) : (float)acc[j];
  }
}

static napi_value sum_rows(napi_env env, napi_callback_info info) {
  ARGS(5)
  F32(x, 0)
  F32(y, 1)
  LONG(m, 2)
  LONG(n, 3)
  bool mean;
  napi_get_value_bool(env, argv[4], &mean);
  NEED(x_length == (size_t)(m * n) && y_length == (size_t)n)
  sum_rows_into(x, y, m, n, mean);
  return undefined(env);
}

// float64 sums of x (or of x^2) in chunks of fixed size, added in chunk order: the same bits for
// any thread count
#define SUM_CHUNK 65536

static double chunked_sum(const float *x, size_t length, int squares) {
  const size_t chunks = (length + SUM_CHUNK - 1) / SUM_CHUNK;
  double *partial = malloc(sizeof(double) * (chunks > 0 ? chunks : 1));
  if (partial == NULL) return NAN;
#pragma omp parallel for schedule(static) if (length >= PARALLEL_MIN)
  for (size_t chunk = 0; chunk < chunks; chunk++) {
    const size_t end = (chunk + 1) * SUM_CHUNK < length ? (chunk + 1) * SUM_CHUNK : length;
    double acc = 0;
    if (squares)
      for (size_t i = chunk * SUM_CHUNK; i < end; i++) acc += (double)x[i] * (double)x[i];
    else
      for (size_t i = chunk * SUM_CHUNK; i < end; i++) acc += x[i];
    partial[chunk] = acc;
  }
  double total = 0;
  for (size_t chunk = 0; chunk < chunks; chunk++) total += partial[chunk];
  free(partial);
  return total;
}

static napi_value sum(napi_env env, napi_callback_info info) {
  ARGS(2)
  F32(x, 0)
  bool squares;
  napi_get_value_bool(env, argv[1], &squares);
  return number(env, chunked_sum(x, x_length, squares));
}

// --- softmax cross-entropy --------------------------------------------------------------------

static napi_value softmax_cross_entropy(napi_env env, napi_callback_info info) {
  ARGS(6)
  F32(logits, 0)
  F32(labels, 1)
  F32(loss, 2)
  F32(grad, 3)
  LONG(m, 4)
  LONG(c, 5)
  NEED(logits_length == (size_t)(m * c) && labels_length == (size_t)m && loss_length == (size_t)m &&
       grad_length == (size_t)(m * c))
#pragma omp parallel for schedule(static) if (m * c >= PARALLEL_MIN / 4)
  for (int64_t i = 0; i < m; i++) {
    const float label = labels[i];
    const float *row = logits + i * c;
    float *out = grad + i * c;
    if (!(label >= 0 && label < (float)c && label == floorf(label))) {
      loss[i] = NAN;
      for (int64_t j = 0; j < c; j++) out[j] = NAN;
      continue;
    }
    const int64_t target = (int64_t)label;
    float max = -INFINITY;
    for (int64_t j = 0; j < c; j++) max = row[j] > max ? row[j] : max;
    double sum_exp = 0;
    for (int64_t j = 0; j < c; j++) {
      const float e = expf(row[j] - max);
      out[j] = e;
      sum_exp += e;
    }
    loss[i] = (float)(log(sum_exp) - ((double)row[target] - (double)max));
    const float inverse = (float)(1.0 / sum_exp);
    const float inverse_m = 1.0f / (float)m;
    for (int64_t j = 0; j < c; j++) out[j] = (out[j] * inverse - (j == target ? 1.0f : 0.0f)) * inverse_m;
  }
  return undefined(env);
}

// --- optimizers -------------------------------------------------------------------------------

static napi_value sgd_momentum(napi_env env, napi_callback_info info) {
  ARGS(6)
  F32(param, 0)
  F32(grad, 1)
  F32(velocity, 2)
  DBL(lr, 3)
  DBL(momentum, 4)
  DBL(weight_decay, 5)
  NEED(grad_length == param_length && velocity_length == param_length)
  // the reference's float64 arithmetic with one rounding per stored value
#pragma omp parallel for schedule(static) if (param_length >= PARALLEL_MIN)
  for (size_t i = 0; i < param_length; i++) {
    const float v = (float)(momentum * velocity[i] + grad[i]);
    velocity[i] = v;
    param[i] = (float)(param[i] - lr * ((double)v + weight_decay * param[i]));
  }
  return undefined(env);
}

// The reference's AdamW (reference/optimizers.ts) in the same float64 operations and float32
// roundings, so that the two agree bit for bit
static napi_value adam_w(napi_env env, napi_callback_info info) {
  ARGS(12)
  F32(param, 0)
  F32(grad, 1)
  F32(m, 2)
  F32(v, 3)
  DBL(lr, 4)
  DBL(beta1, 5)
  DBL(beta2, 6)
  DBL(epsilon, 7)
  DBL(weight_decay, 8)
  DBL(gradient_scale, 9)
  DBL(correction1, 10)
  DBL(correction2, 11)
  NEED(grad_length == param_length && m_length == param_length && v_length == param_length)
  const double one_minus_beta1 = 1 - beta1, one_minus_beta2 = 1 - beta2;
#pragma omp parallel for schedule(static) if (param_length >= PARALLEL_MIN)
  for (size_t i = 0; i < param_length; i++) {
    const double g = (float)(grad[i] * gradient_scale);
    const double mi = (float)(beta1 * m[i] + one_minus_beta1 * g);
    const double vi = (float)(beta2 * v[i] + one_minus_beta2 * g * g);
    m[i] = (float)mi;
    v[i] = (float)vi;
    const double p = param[i];
    param[i] = (float)(p - lr * ((mi * correction1) / (sqrt(vi * correction2) + epsilon) + weight_decay * p));
  }
  return undefined(env);
}

// --- int8 quantization (reference/quantize.ts, bit for bit) -----------------------------------

#define INT8_BLOCK_MAX_MIN 7.888609052210118e-31 /* 2^-100 */
#define HALF_MARGIN 9.094947017729282e-13       /* 2^-40 */

static int8_t quantize_value(double x, double scale) {
  const double magnitude = fabs(x);
  const double shifted = magnitude / scale + 0.5;
  double k = floor(shifted);
  const double fraction = shifted - k;
  if (fraction < HALF_MARGIN || fraction > 1 - HALF_MARGIN) {
    while (k > 0 && 2 * magnitude < (2 * k - 1) * scale) k--;
    while (2 * magnitude >= (2 * k + 1) * scale) k++;
  }
  if (isnan(k)) return 0;
  const int clamped = k < 127 ? (int)k : 127;
  return (int8_t)(x < 0 ? -clamped : clamped);
}

static napi_value quantize_int8(napi_env env, napi_callback_info info) {
  ARGS(4)
  F32(x, 0)
  I8(values, 1)
  F32(scales, 2)
  LONG(block_size, 3)
  NEED(block_size > 0 && values_length == x_length &&
       scales_length == (x_length + (size_t)block_size - 1) / (size_t)block_size)
  const int64_t blocks = (int64_t)scales_length;
#pragma omp parallel for schedule(static) if (x_length >= PARALLEL_MIN)
  for (int64_t b = 0; b < blocks; b++) {
    const size_t start = (size_t)(b * block_size);
    const size_t end = start + (size_t)block_size < x_length ? start + (size_t)block_size : x_length;
    double max = 0;
    for (size_t i = start; i < end; i++) {
      const double magnitude = fabs((double)x[i]);
      if (magnitude > max) max = magnitude;
    }
    const float s = max < INT8_BLOCK_MAX_MIN ? 0.0f : (float)(max / 127);
    scales[b] = s;
    if (s == 0) {
      memset(values + start, 0, end - start);
      continue;
    }
    for (size_t i = start; i < end; i++) values[i] = quantize_value(x[i], s);
  }
  return undefined(env);
}

static napi_value dequantize_int8(napi_env env, napi_callback_info info) {
  ARGS(4)
  I8(values, 0)
  F32(scales, 1)
  LONG(block_size, 2)
  F32(x, 3)
  NEED(block_size > 0 && x_length <= values_length &&
       scales_length >= (x_length + (size_t)block_size - 1) / (size_t)block_size)
#pragma omp parallel for schedule(static) if (x_length >= PARALLEL_MIN)
  for (size_t i = 0; i < x_length; i++) x[i] = (float)values[i] * scales[i / (size_t)block_size];
  return undefined(env);
}

// --- embedding --------------------------------------------------------------------------------

static int64_t row_of(float id, int64_t rows) {
  return id >= 0 && id < (float)rows && id == floorf(id) ? (int64_t)id : -1;
}

static napi_value embedding(napi_env env, napi_callback_info info) {
  ARGS(5)
  F32(table, 0)
  F32(ids, 1)
  F32(out, 2)
  LONG(rows, 3)
  LONG(width, 4)
  NEED(table_length == (size_t)(rows * width) && out_length == ids_length * (size_t)width)
  const int64_t count = (int64_t)ids_length;
#pragma omp parallel for schedule(static) if (out_length >= PARALLEL_MIN)
  for (int64_t n = 0; n < count; n++) {
    const int64_t row = row_of(ids[n], rows);
    if (row < 0)
      for (int64_t j = 0; j < width; j++) out[n * width + j] = NAN;
    else
      memcpy(out + n * width, table + row * width, sizeof(float) * width);
  }
  return undefined(env);
}

// dTable[rows, width]: row v sums gradOutput[n, :] over ids[n] = v in ascending n (float64 sums).
// Split by table rows: each thread walks all ids and adds only those of the rows it owns.
static napi_value embedding_backward(napi_env env, napi_callback_info info) {
  ARGS(5)
  F32(dy, 0)
  F32(ids, 1)
  F32(table, 2)
  LONG(rows, 3)
  LONG(width, 4)
  NEED(table_length == (size_t)(rows * width) && dy_length == ids_length * (size_t)width)
  const int64_t count = (int64_t)ids_length;
  double *acc = calloc((size_t)(rows * width) + 1, sizeof(double));
  if (acc == NULL) return fail(env, "out of memory");
#pragma omp parallel if (dy_length >= PARALLEL_MIN)
  {
    const int64_t threads = omp_get_num_threads(), me = omp_get_thread_num();
    const int64_t first = rows * me / threads, last = rows * (me + 1) / threads;
    for (int64_t n = 0; n < count; n++) {
      const int64_t row = row_of(ids[n], rows);
      if (row < first || row >= last) continue;
      for (int64_t j = 0; j < width; j++) acc[row * width + j] += dy[n * width + j];
    }
  }
  for (int64_t i = 0; i < rows * width; i++) table[i] = (float)acc[i];
  free(acc);
  return undefined(env);
}

// --- LayerNorm --------------------------------------------------------------------------------

static napi_value layer_norm(napi_env env, napi_callback_info info) {
  ARGS(9)
  F32(x, 0)
  F32(gamma, 1)
  F32(beta, 2)
  F32(y, 3)
  F32(means, 4)
  F32(rstds, 5)
  LONG(m, 6)
  LONG(d, 7)
  DBL(epsilon, 8)
  NEED(x_length == (size_t)(m * d) && y_length == x_length && gamma_length == (size_t)d &&
       beta_length == (size_t)d && means_length == (size_t)m && rstds_length == (size_t)m)
#pragma omp parallel for schedule(static) if (m * d >= PARALLEL_MIN / 4)
  for (int64_t i = 0; i < m; i++) {
    const float *row = x + i * d;
    double sum = 0;
    for (int64_t j = 0; j < d; j++) sum += row[j];
    const double mean = sum / (double)d;
    double squares = 0;
    for (int64_t j = 0; j < d; j++) squares += (row[j] - mean) * (row[j] - mean);
    const double rstd = 1 / sqrt(squares / (double)d + epsilon);
    const float mean32 = (float)mean, rstd32 = (float)rstd;
    for (int64_t j = 0; j < d; j++) y[i * d + j] = (row[j] - mean32) * rstd32 * gamma[j] + beta[j];
    means[i] = mean32;
    rstds[i] = rstd32;
  }
  return undefined(env);
}

static napi_value layer_norm_backward(napi_env env, napi_callback_info info) {
  ARGS(10)
  F32(dy, 0)
  F32(x, 1)
  F32(gamma, 2)
  F32(means, 3)
  F32(rstds, 4)
  F32(dx, 5)
  F32(dgamma, 6)
  F32(dbeta, 7)
  LONG(m, 8)
  LONG(d, 9)
  NEED(x_length == (size_t)(m * d) && dy_length == x_length && dx_length == x_length &&
       gamma_length == (size_t)d && dgamma_length == (size_t)d && dbeta_length == (size_t)d &&
       means_length == (size_t)m && rstds_length == (size_t)m)
  // dx row by row
#pragma omp parallel for schedule(static) if (m * d >= PARALLEL_MIN / 4)
  for (int64_t i = 0; i < m; i++) {
    const float mean = means[i], rstd = rstds[i];
    const float *row = x + i * d, *grow = dy + i * d;
    float sum_g = 0, sum_g_xhat = 0;
    for (int64_t j = 0; j < d; j++) {
      const float xhat = (row[j] - mean) * rstd;
      const float g = grow[j] * gamma[j];
      sum_g += g;
      sum_g_xhat += g * xhat;
    }
    const float mean_g = sum_g / (float)d, mean_g_xhat = sum_g_xhat / (float)d;
    for (int64_t j = 0; j < d; j++) {
      const float xhat = (row[j] - mean) * rstd;
      dx[i * d + j] = rstd * (grow[j] * gamma[j] - mean_g - xhat * mean_g_xhat);
    }
  }
  // dGamma, dBeta: split by columns, rows in ascending order
  const int64_t blocks = (d + COLUMN_BLOCK - 1) / COLUMN_BLOCK;
#pragma omp parallel for schedule(static) if (m * d >= PARALLEL_MIN)
  for (int64_t block = 0; block < blocks; block++) {
    double acc_gamma[COLUMN_BLOCK] = {0}, acc_beta[COLUMN_BLOCK] = {0};
    const int64_t j0 = block * COLUMN_BLOCK;
    const int64_t width = d - j0 < COLUMN_BLOCK ? d - j0 : COLUMN_BLOCK;
    for (int64_t i = 0; i < m; i++) {
      const float mean = means[i], rstd = rstds[i];
      for (int64_t j = 0; j < width; j++) {
        const float g = dy[i * d + j0 + j];
        acc_gamma[j] += g * ((x[i * d + j0 + j] - mean) * rstd);
        acc_beta[j] += g;
      }
    }
    for (int64_t j = 0; j < width; j++) {
      dgamma[j0 + j] = (float)acc_gamma[j];
      dbeta[j0 + j] = (float)acc_beta[j];
    }
  }
  return undefined(env);
}

// --- attention --------------------------------------------------------------------------------
// Per (sequence, head), on one thread each: S = Q K^T by sgemm straight from the packed qkv rows
// (leading dimension 3D), the causal softmax row by row, O = P V by sgemm into the output's columns.
// OpenBLAS runs single-threaded inside an active OpenMP region (always one here, as in
// parallel_sgemm), so the heads are the parallelism.
// The [T, T] block lives in this thread's scratch memory only.

// rows r of s[count, ld] see columns 0 ..= offset + r: exp(s * scale - max), normalised; lse[r]
static void causal_softmax(float *s, int64_t count, int64_t ld, int64_t offset, float scale, float *lse) {
  for (int64_t r = 0; r < count; r++) {
    float *row = s + r * ld;
    const int64_t visible = offset + r + 1;
    float max = -INFINITY;
    for (int64_t j = 0; j < visible; j++) {
      row[j] *= scale;
      max = row[j] > max ? row[j] : max;
    }
    double sum = 0;
    for (int64_t j = 0; j < visible; j++) {
      row[j] = expf(row[j] - max);
      sum += row[j];
    }
    const float inverse = (float)(1.0 / sum);
    for (int64_t j = 0; j < visible; j++) row[j] *= inverse;
    for (int64_t j = visible; j < ld; j++) row[j] = 0;
    if (lse != NULL) lse[r] = (float)(max + log(sum));
  }
}

static napi_value attention(napi_env env, napi_callback_info info) {
  ARGS(7)
  F32(qkv, 0)
  F32(out, 1)
  F32(lse, 2)
  LONG(batch, 3)
  LONG(T, 4)
  LONG(heads, 5)
  LONG(D, 6)
  NEED(heads > 0 && D % heads == 0 && qkv_length == (size_t)(batch * T * 3 * D) &&
       out_length == (size_t)(batch * T * D) && lse_length == (size_t)(batch * heads * T))
  if (batch == 0 || T == 0 || D == 0) return fail(env, "attention needs B, T and D above 0");
  const int64_t hd = D / heads;
  const float scale = 1.0f / sqrtf((float)hd);
  int failed = 0;
#pragma omp parallel for schedule(static) num_threads(thread_count)
  for (int64_t pair = 0; pair < batch * heads; pair++) {
    const int64_t b = pair / heads, h = pair % heads;
    float *s = malloc(sizeof(float) * T * T);
    if (s == NULL) {
      failed = 1;
      continue;
    }
    const float *q = qkv + b * T * 3 * D + h * hd;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)T, (int)hd, 1.0f, q, (int)(3 * D),
                q + D, (int)(3 * D), 0.0f, s, (int)T);
    causal_softmax(s, T, T, 0, scale, lse + (b * heads + h) * T);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)T, (int)hd, (int)T, 1.0f, s, (int)T,
                q + 2 * D, (int)(3 * D), 0.0f, out + b * T * D + h * hd, (int)D);
    free(s);
  }
  if (failed) return fail(env, "out of memory for attention scores");
  return undefined(env);
}

// dV = P^T dO, dP = dO V^T, dS = P * (dP - rowsum(dO * O)) / sqrt(hd), dQ = dS K, dK = dS^T Q
static napi_value attention_backward(napi_env env, napi_callback_info info) {
  ARGS(9)
  F32(dout, 0)
  F32(qkv, 1)
  F32(out, 2)
  F32(lse, 3)
  F32(dqkv, 4)
  LONG(batch, 5)
  LONG(T, 6)
  LONG(heads, 7)
  LONG(D, 8)
  NEED(heads > 0 && D % heads == 0 && qkv_length == (size_t)(batch * T * 3 * D) &&
       dqkv_length == qkv_length && out_length == (size_t)(batch * T * D) && dout_length == out_length &&
       lse_length == (size_t)(batch * heads * T))
  if (batch == 0 || T == 0 || D == 0) return fail(env, "attention needs B, T and D above 0");
  const int64_t hd = D / heads;
  const float scale = 1.0f / sqrtf((float)hd);
  int failed = 0;
#pragma omp parallel for schedule(static) num_threads(thread_count)
  for (int64_t pair = 0; pair < batch * heads; pair++) {
    const int64_t b = pair / heads, h = pair % heads;
    float *p = malloc(sizeof(float) * T * T);
    float *dp = malloc(sizeof(float) * T * T);
    if (p == NULL || dp == NULL) {
      free(p);
      free(dp);
      failed = 1;
      continue;
    }
    const float *q = qkv + b * T * 3 * D + h * hd, *k = q + D, *v = q + 2 * D;
    const float *o = out + b * T * D + h * hd, *dO = dout + b * T * D + h * hd;
    const float *l = lse + (b * heads + h) * T;
    float *dq = dqkv + b * T * 3 * D + h * hd, *dk = dq + D, *dv = dq + 2 * D;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)T, (int)hd, scale, q, (int)(3 * D), k,
                (int)(3 * D), 0.0f, p, (int)T);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)T, (int)T, (int)hd, 1.0f, dO, (int)D, v,
                (int)(3 * D), 0.0f, dp, (int)T);
    for (int64_t i = 0; i < T; i++) {
      float delta = 0;
      for (int64_t c = 0; c < hd; c++) delta += dO[i * D + c] * o[i * D + c];
      float *prow = p + i * T, *dprow = dp + i * T;
      for (int64_t j = 0; j <= i; j++) {
        prow[j] = expf(prow[j] - l[i]);
        dprow[j] = prow[j] * (dprow[j] - delta) * scale;
      }
      for (int64_t j = i + 1; j < T; j++) prow[j] = dprow[j] = 0;
    }
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)T, (int)hd, (int)T, 1.0f, p, (int)T, dO, (int)D,
                0.0f, dv, (int)(3 * D));
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)T, (int)hd, (int)T, 1.0f, dp, (int)T, k,
                (int)(3 * D), 0.0f, dq, (int)(3 * D));
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)T, (int)hd, (int)T, 1.0f, dp, (int)T, q,
                (int)(3 * D), 0.0f, dk, (int)(3 * D));
    free(p);
    free(dp);
  }
  if (failed) return fail(env, "out of memory for attention scores");
  return undefined(env);
}

// queries [N, D] at positions offset .. offset + N - 1 against keys, values [L, D]
static napi_value attention_cached(napi_env env, napi_callback_info info) {
  ARGS(7)
  F32(queries, 0)
  F32(keys, 1)
  F32(values, 2)
  F32(out, 3)
  LONG(N, 4)
  LONG(heads, 5)
  LONG(offset, 6)
  NEED(heads > 0 && N > 0 && queries_length % (size_t)N == 0)
  const int64_t D = (int64_t)queries_length / N;
  const int64_t visible = offset + N;
  NEED(D % heads == 0 && keys_length % (size_t)D == 0 && keys_length >= (size_t)(visible * D) &&
       values_length == keys_length && out_length == queries_length)
  const int64_t hd = D / heads;
  const float scale = 1.0f / sqrtf((float)hd);
  int failed = 0;
#pragma omp parallel for schedule(static) num_threads(thread_count)
  for (int64_t h = 0; h < heads; h++) {
    float *s = malloc(sizeof(float) * N * visible);
    if (s == NULL) {
      failed = 1;
      continue;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)visible, (int)hd, 1.0f, queries + h * hd,
                (int)D, keys + h * hd, (int)D, 0.0f, s, (int)visible);
    causal_softmax(s, N, visible, offset, scale, NULL);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, (int)hd, (int)visible, 1.0f, s,
                (int)visible, values + h * hd, (int)D, 0.0f, out + h * hd, (int)D);
    free(s);
  }
  if (failed) return fail(env, "out of memory for attention scores");
  return undefined(env);
}

// --- module -----------------------------------------------------------------------------------

NAPI_MODULE_INIT() {
  const napi_property_descriptor functions[] = {
      {"setThreads", NULL, set_threads, NULL, NULL, NULL, napi_enumerable, NULL},
      {"describe", NULL, describe, NULL, NULL, NULL, napi_enumerable, NULL},
      {"matmul", NULL, matmul, NULL, NULL, NULL, napi_enumerable, NULL},
      {"biasAdd", NULL, bias_add, NULL, NULL, NULL, napi_enumerable, NULL},
      {"relu", NULL, relu, NULL, NULL, NULL, napi_enumerable, NULL},
      {"reluBackward", NULL, relu_backward, NULL, NULL, NULL, napi_enumerable, NULL},
      {"add", NULL, add, NULL, NULL, NULL, napi_enumerable, NULL},
      {"axpy", NULL, axpy, NULL, NULL, NULL, napi_enumerable, NULL},
      {"scale", NULL, scale, NULL, NULL, NULL, napi_enumerable, NULL},
      {"gelu", NULL, gelu, NULL, NULL, NULL, napi_enumerable, NULL},
      {"geluBackward", NULL, gelu_backward, NULL, NULL, NULL, napi_enumerable, NULL},
      {"sumRows", NULL, sum_rows, NULL, NULL, NULL, napi_enumerable, NULL},
      {"sum", NULL, sum, NULL, NULL, NULL, napi_enumerable, NULL},
      {"softmaxCrossEntropy", NULL, softmax_cross_entropy, NULL, NULL, NULL, napi_enumerable, NULL},
      {"sgdMomentum", NULL, sgd_momentum, NULL, NULL, NULL, napi_enumerable, NULL},
      {"adamW", NULL, adam_w, NULL, NULL, NULL, napi_enumerable, NULL},
      {"quantizeInt8", NULL, quantize_int8, NULL, NULL, NULL, napi_enumerable, NULL},
      {"dequantizeInt8", NULL, dequantize_int8, NULL, NULL, NULL, napi_enumerable, NULL},
      {"embedding", NULL, embedding, NULL, NULL, NULL, napi_enumerable, NULL},
      {"embeddingBackward", NULL, embedding_backward, NULL, NULL, NULL, napi_enumerable, NULL},
      {"layerNorm", NULL, layer_norm, NULL, NULL, NULL, napi_enumerable, NULL},
      {"layerNormBackward", NULL, layer_norm_backward, NULL, NULL, NULL, napi_enumerable, NULL},
      {"attention", NULL, attention, NULL, NULL, NULL, napi_enumerable, NULL},
      {"attentionBackward", NULL, attention_backward, NULL, NULL, NULL, napi_enumerable, NULL},
      {"attentionCached", NULL, attention_cached, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  napi_define_properties(env, exports, sizeof(functions) / sizeof(functions[0]), functions);
  return exports;
}

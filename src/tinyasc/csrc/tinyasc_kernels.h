/* tinyasc C runtime: the kernels every exported BC-ResNet-ASC model uses (generic, model-independent).
 * C99, no allocation, no libc beyond <math.h> (expf, logf, sqrtf). Activations are float32; weights are
 * int8 codes (a quantized layer) or float32, stored sparsely (see ta_conv below). */
#ifndef TINYASC_KERNELS_H
#define TINYASC_KERNELS_H

#include <stddef.h>
#include <stdint.h>

enum { TA_ACT_NONE = 0, TA_ACT_RELU = 1, TA_ACT_SILU = 2 };

/* One convolution with its folded norm. Weights of output filter o (its fan-in = cin/groups*kh*kw values
 * in PyTorch's (ci, ky, kx) order) are either dense (nib == NULL: fan-in values per filter) or sparse:
 * a nibble stream (two per byte, low nibble first, continuing across filters) where 0..13 = skip that
 * many zero weights then take the next stored value, 14 = skip 14 zeros, 15 = end of this filter.
 * Values are int8 codes (q) or floats (w); y = act(acc * mult[o*bands + band] + bias[...]) where acc is
 * the sum of value × input, band = output frequency row / (fout / bands) (SubSpectralNorm; bands = 1 for
 * BatchNorm), bias NULL for none. */
typedef struct {
    uint16_t cout, cin, groups, kh, kw, sh, sw, ph, pw, bands;
    uint8_t act;
    const uint8_t *nib;
    const int8_t *q;
    const float *w;
    const float *mult;
    const float *bias;
} ta_conv_t;

void ta_conv(const ta_conv_t *L, const float *x, int fin, int tin, float *y, int fout, int tout);

/* Residual Normalization in place on x (c, f, t): x = lam[f or 0] * x + (x - mean_f) / sqrt(var_f + eps),
 * mean and (biased) variance per frequency row over channels and time. lam_n is 1 or f. */
void ta_resnorm(float *x, int c, int f, int t, const float *lam, int lam_n, float eps);
/* (x - mean[f]) / (std[f] + eps) in place on x (1, f, t): the 'Global FreqNorm' input norm */
void ta_globalnorm(float *x, int f, int t, const float *mean, const float *std, float eps);
/* y (c, 1, t) = mean over frequency of x (c, f, t) */
void ta_freq_mean(const float *x, float *y, int c, int f, int t);
/* x (c, f, t) = relu(x + y (c, 1, t) broadcast over f [+ shortcut (c, f, t)]) */
void ta_broadcast_add_relu(float *x, const float *y, const float *shortcut, int c, int f, int t);
/* y (c, f/2, t/2) = 2x2 max-pool, stride 2, floor */
void ta_maxpool2(const float *x, float *y, int c, int f, int t);
/* y (c) = mean over (f, t) of x (c, f, t) */
void ta_global_mean(const float *x, float *y, int c, int f, int t);

/* Log-mel front end of one window, frame by frame (centred frames, zero padding, periodic window):
 * features (n_mels, frames) row-major. pcm: n_valid samples, the rest of the window is zeros. */
typedef struct {
    int n_fft, hop, frames, n_mels, n_bins; /* n_bins = n_fft / 2 + 1 */
    int win_offset, win_length;               /* window placed at win_offset inside the n_fft frame */
    const float *window;                      /* win_length values */
    const float *twiddle;                     /* n_fft / 2 complex (re, im): exp(-2 pi i k / n_fft) */
    const int *factors;                       /* factors of n_fft / 2, 0-terminated */
    const uint16_t *mel_rows;                 /* n_mels + 1 CSR row starts */
    const uint16_t *mel_cols;                 /* FFT bin of each filter weight */
    const float *mel_weights;
    float log_offset;
} ta_frontend_t;

/* scratch: 2 * n_fft + n_bins floats */
void ta_logmel(const ta_frontend_t *fe, const int16_t *pcm, long n_valid, float *features, float *scratch);

#endif

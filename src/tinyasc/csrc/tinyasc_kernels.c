/* tinyasc C runtime kernels (see tinyasc_kernels.h). Written for clarity first: every loop is plain C99
 * over float32 planes (c, f, t) stored row-major, so a compiler can vectorise the inner (time) loops. */
#include "tinyasc_kernels.h"

#include <math.h>

/* first output index whose input index o*stride + k - pad is >= 0, and last one that is < n_in */
static int first_valid(int k, int pad, int stride)
{
    int need = pad - k;
    return need > 0 ? (need + stride - 1) / stride : 0;
}

static int last_valid(int k, int pad, int stride, int n_in, int n_out)
{
    int num = n_in - 1 + pad - k;
    int last;
    if (num < 0)
        return -1;
    last = num / stride;
    return last < n_out - 1 ? last : n_out - 1;
}

/* y (fout, tout) += w * x shifted by tap (ky, kx) */
static void accumulate_tap(float *y, const float *x, float w, int ky, int kx, const ta_conv_t *L,
                           int fin, int tin, int fout, int tout)
{
    int f0 = first_valid(ky, L->ph, L->sh), f1 = last_valid(ky, L->ph, L->sh, fin, fout);
    int t0 = first_valid(kx, L->pw, L->sw), t1 = last_valid(kx, L->pw, L->sw, tin, tout);
    int fo, to;
    for (fo = f0; fo <= f1; fo++) {
        float *yr = y + (size_t)fo * tout;
        const float *xr = x + (size_t)(fo * L->sh + ky - L->ph) * tin + (kx - L->pw);
        if (L->sw == 1) {
            for (to = t0; to <= t1; to++)
                yr[to] += w * xr[to];
        } else {
            for (to = t0; to <= t1; to++)
                yr[to] += w * xr[to * L->sw];
        }
    }
}

void ta_conv(const ta_conv_t *L, const float *x, int fin, int tin, float *y, int fout, int tout)
{
    const int taps = L->kh * L->kw;
    const int cin_g = L->cin / L->groups, cout_g = L->cout / L->groups;
    const int fanin = cin_g * taps;
    const size_t plane_in = (size_t)fin * tin, plane_out = (size_t)fout * tout;
    const int rows_per_band = fout / L->bands > 0 ? fout / L->bands : 1;
    size_t vi = 0, ni = 0;
    int o;
    for (o = 0; o < L->cout; o++) {
        float *yo = y + (size_t)o * plane_out;
        const float *xg = x + (size_t)(o / cout_g) * cin_g * plane_in;
        int p = -1, fo;
        size_t i;
        for (i = 0; i < plane_out; i++)
            yo[i] = 0.0f;
        for (;;) {
            float w;
            if (L->nib) {
                unsigned code = (unsigned)(L->nib[ni >> 1] >> ((ni & 1u) * 4u)) & 15u;
                ni++;
                if (code == 15u)
                    break;
                if (code == 14u) {
                    p += 14;
                    continue;
                }
                p += (int)code + 1;
            } else if (++p >= fanin) {
                break;
            }
            w = L->q ? (float)L->q[vi] : L->w[vi];
            vi++;
            if (w != 0.0f)
                accumulate_tap(yo, xg + (size_t)(p / taps) * plane_in, w, (p % taps) / L->kw, p % L->kw, L,
                               fin, tin, fout, tout);
        }
        for (fo = 0; fo < fout; fo++) {
            int band = fo / rows_per_band < L->bands ? fo / rows_per_band : L->bands - 1;
            float m = L->mult[o * L->bands + band], b = L->bias ? L->bias[o * L->bands + band] : 0.0f;
            float *yr = yo + (size_t)fo * tout;
            int to;
            for (to = 0; to < tout; to++) {
                float v = yr[to] * m + b;
                if (L->act == TA_ACT_RELU)
                    v = v > 0.0f ? v : 0.0f;
                else if (L->act == TA_ACT_SILU)
                    v = v / (1.0f + expf(-v));
                yr[to] = v;
            }
        }
    }
}

void ta_resnorm(float *x, int c, int f, int t, const float *lam, int lam_n, float eps)
{
    const double n = (double)c * t;
    int fi, ci, ti;
    for (fi = 0; fi < f; fi++) {
        float mean, scale, l = lam[lam_n > 1 ? fi : 0];
        double sum = 0.0, sq = 0.0;
        for (ci = 0; ci < c; ci++) {
            const float *r = x + ((size_t)ci * f + fi) * t;
            float s = 0.0f;
            for (ti = 0; ti < t; ti++)
                s += r[ti];
            sum += s;
        }
        mean = (float)(sum / n);
        for (ci = 0; ci < c; ci++) {
            const float *r = x + ((size_t)ci * f + fi) * t;
            float s = 0.0f;
            for (ti = 0; ti < t; ti++)
                s += (r[ti] - mean) * (r[ti] - mean);
            sq += s;
        }
        scale = 1.0f / sqrtf((float)(sq / n) + eps);
        for (ci = 0; ci < c; ci++) {
            float *r = x + ((size_t)ci * f + fi) * t;
            for (ti = 0; ti < t; ti++)
                r[ti] = l * r[ti] + (r[ti] - mean) * scale;
        }
    }
}

void ta_globalnorm(float *x, int f, int t, const float *mean, const float *std, float eps)
{
    int fi, ti;
    for (fi = 0; fi < f; fi++) {
        float *r = x + (size_t)fi * t;
        for (ti = 0; ti < t; ti++)
            r[ti] = (r[ti] - mean[fi]) / (std[fi] + eps);
    }
}

void ta_freq_mean(const float *x, float *y, int c, int f, int t)
{
    int ci, fi, ti;
    for (ci = 0; ci < c; ci++) {
        float *yr = y + (size_t)ci * t;
        for (ti = 0; ti < t; ti++)
            yr[ti] = 0.0f;
        for (fi = 0; fi < f; fi++) {
            const float *r = x + ((size_t)ci * f + fi) * t;
            for (ti = 0; ti < t; ti++)
                yr[ti] += r[ti];
        }
        for (ti = 0; ti < t; ti++)
            yr[ti] /= (float)f;
    }
}

void ta_broadcast_add_relu(float *x, const float *y, const float *shortcut, int c, int f, int t)
{
    int ci, fi, ti;
    for (ci = 0; ci < c; ci++) {
        const float *yr = y + (size_t)ci * t;
        for (fi = 0; fi < f; fi++) {
            size_t row = ((size_t)ci * f + fi) * t;
            float *r = x + row;
            for (ti = 0; ti < t; ti++) {
                float v = r[ti] + yr[ti];
                if (shortcut)
                    v += shortcut[row + ti];
                r[ti] = v > 0.0f ? v : 0.0f;
            }
        }
    }
}

void ta_maxpool2(const float *x, float *y, int c, int f, int t)
{
    int fo = f / 2, to = t / 2, ci, fi, ti;
    for (ci = 0; ci < c; ci++) {
        for (fi = 0; fi < fo; fi++) {
            const float *a = x + ((size_t)ci * f + 2 * fi) * t, *b = a + t;
            float *r = y + ((size_t)ci * fo + fi) * to;
            for (ti = 0; ti < to; ti++) {
                float m0 = a[2 * ti] > a[2 * ti + 1] ? a[2 * ti] : a[2 * ti + 1];
                float m1 = b[2 * ti] > b[2 * ti + 1] ? b[2 * ti] : b[2 * ti + 1];
                r[ti] = m0 > m1 ? m0 : m1;
            }
        }
    }
}

void ta_global_mean(const float *x, float *y, int c, int f, int t)
{
    const size_t n = (size_t)f * t;
    int ci;
    for (ci = 0; ci < c; ci++) {
        const float *r = x + (size_t)ci * n;
        double s = 0.0;
        size_t i;
        for (i = 0; i < n; i++)
            s += r[i];
        y[ci] = (float)(s / (double)n);
    }
}

/* ------------------------------------------------------------------------------------------------
 * Front end: a mixed-radix complex FFT (recursive decimation in time, any factors up to TA_MAX_RADIX),
 * the real FFT of n_fft points from one complex FFT of n_fft / 2, power, sparse mel, log. */

#define TA_MAX_RADIX 32

/* exp(-2 pi i j / n_fft) for any j: the table holds j < n_fft / 2, the rest is its negation */
static void twiddle(const ta_frontend_t *fe, int j, float *re, float *im)
{
    int half = fe->n_fft / 2;
    j %= fe->n_fft;
    if (j < half) {
        *re = fe->twiddle[2 * j];
        *im = fe->twiddle[2 * j + 1];
    } else {
        *re = -fe->twiddle[2 * (j - half)];
        *im = -fe->twiddle[2 * (j - half) + 1];
    }
}

/* out[0..n) = DFT of in[0], in[stride], … (complex interleaved); step = n_fft / n */
static void fft_rec(const ta_frontend_t *fe, float *out, const float *in, int n, int stride, const int *factors, int step)
{
    int p = factors[0], m = n / p, q, k, r;
    float tmp[2 * TA_MAX_RADIX];
    if (m == 1) {
        for (q = 0; q < p; q++) {
            out[2 * q] = in[2 * q * stride];
            out[2 * q + 1] = in[2 * q * stride + 1];
        }
    } else {
        for (q = 0; q < p; q++)
            fft_rec(fe, out + 2 * q * m, in + 2 * q * stride, m, stride * p, factors + 1, step * p);
    }
    for (k = 0; k < m; k++) {
        for (q = 0; q < p; q++) { /* tmp[q] = W_n^(q k) * Z_q[k] */
            float wr, wi, zr = out[2 * (q * m + k)], zi = out[2 * (q * m + k) + 1];
            twiddle(fe, q * k * step, &wr, &wi);
            tmp[2 * q] = zr * wr - zi * wi;
            tmp[2 * q + 1] = zr * wi + zi * wr;
        }
        for (r = 0; r < p; r++) { /* out[k + r m] = sum_q tmp[q] W_p^(q r) */
            float sr = 0.0f, si = 0.0f;
            for (q = 0; q < p; q++) {
                float wr, wi;
                twiddle(fe, ((q * r) % p) * m * step, &wr, &wi);
                sr += tmp[2 * q] * wr - tmp[2 * q + 1] * wi;
                si += tmp[2 * q] * wi + tmp[2 * q + 1] * wr;
            }
            out[2 * (k + r * m)] = sr;
            out[2 * (k + r * m) + 1] = si;
        }
    }
}

void ta_logmel(const ta_frontend_t *fe, const int16_t *pcm, long n_valid, float *features, float *scratch)
{
    const int n = fe->n_fft, half = n / 2;
    float *frame = scratch, *z = scratch + n, *power = scratch + 2 * n;
    int t, j, k, m;
    for (t = 0; t < fe->frames; t++) {
        long start = (long)t * fe->hop - half; /* centred frame: sample index of frame[0] */
        for (j = 0; j < n; j++)
            frame[j] = 0.0f;
        for (j = 0; j < fe->win_length; j++) {
            long s = start + fe->win_offset + j;
            if (s >= 0 && s < n_valid)
                frame[fe->win_offset + j] = fe->window[j] * ((float)pcm[s] / 32768.0f);
        }
        /* the n real samples as n / 2 complex ones (even + i odd) */
        fft_rec(fe, z, frame, half, 1, fe->factors, 2);
        for (k = 0; k <= half; k++) { /* X[k] = E[k] + W^k O[k] from Z[k] and conj(Z[half - k]) */
            int a = k % half, b = (half - k) % half;
            float zr = z[2 * a], zi = z[2 * a + 1], cr = z[2 * b], ci = -z[2 * b + 1];
            float er = 0.5f * (zr + cr), ei = 0.5f * (zi + ci);
            float dr = 0.5f * (zr - cr), di = 0.5f * (zi - ci); /* O = d / i = (di, -dr) */
            float orr = di, oi = -dr, wr, wi, xr, xi;
            twiddle(fe, k, &wr, &wi);
            xr = er + orr * wr - oi * wi;
            xi = ei + orr * wi + oi * wr;
            power[k] = xr * xr + xi * xi;
        }
        for (m = 0; m < fe->n_mels; m++) {
            float s = 0.0f;
            for (j = fe->mel_rows[m]; j < fe->mel_rows[m + 1]; j++)
                s += fe->mel_weights[j] * power[fe->mel_cols[j]];
            features[(size_t)m * fe->frames + t] = logf(s + fe->log_offset);
        }
    }
}

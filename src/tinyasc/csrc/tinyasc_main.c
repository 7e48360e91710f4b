/* Host program of an exported tinyasc model (C99 + libc).
 *   tinyasc_c [--digits D] FILE.wav... one row per file: name, label, class probabilities (the table
 *                                      `tinyasc predict` writes): windows of TA_WINDOW_SAMPLES, the last
 *                                      zero-padded, probabilities averaged by each window's real samples
 *   tinyasc_c --features FILE.wav      the first window's log-mel features, float32, to stdout
 *   tinyasc_c --stream [--smooth N]    16-bit little-endian mono PCM at TA_SAMPLE_RATE on stdin; one line per
 *                                      full window: index, label, probability (mean of the last N windows)
 * WAV files must be 16-bit PCM, mono, at TA_SAMPLE_RATE (convert with e.g. ffmpeg -ar 16000 -ac 1). */
#include "tinyasc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static unsigned long u32le(const unsigned char *b) { return b[0] | (b[1] << 8) | ((unsigned long)b[2] << 16) | ((unsigned long)b[3] << 24); }
static unsigned u16le(const unsigned char *b) { return b[0] | (b[1] << 8); }

/* samples of a 16-bit mono PCM WAV at TA_SAMPLE_RATE (malloc'd), or NULL with a message */
static int16_t *read_wav(const char *path, long *n)
{
    unsigned char head[12], chunk[8], fmt[16];
    int have_fmt = 0;
    int16_t *pcm = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "tinyasc_c: %s: cannot open\n", path);
        return NULL;
    }
    if (fread(head, 1, 12, f) != 12 || memcmp(head, "RIFF", 4) || memcmp(head + 8, "WAVE", 4)) {
        fprintf(stderr, "tinyasc_c: %s: not a WAV file\n", path);
        fclose(f);
        return NULL;
    }
    while (fread(chunk, 1, 8, f) == 8) {
        unsigned long size = u32le(chunk + 4);
        if (!memcmp(chunk, "fmt ", 4) && size >= 16) {
            unsigned tag;
            if (fread(fmt, 1, 16, f) != 16)
                break;
            tag = u16le(fmt);
            if ((tag != 1 && tag != 0xFFFEu) || u16le(fmt + 2) != 1 || u32le(fmt + 4) != TA_SAMPLE_RATE || u16le(fmt + 14) != 16) {
                fprintf(stderr, "tinyasc_c: %s: need 16-bit PCM, mono, %d Hz\n", path, TA_SAMPLE_RATE);
                fclose(f);
                return NULL;
            }
            have_fmt = 1;
            fseek(f, (long)(size - 16 + (size & 1)), SEEK_CUR);
        } else if (!memcmp(chunk, "data", 4) && have_fmt) {
            long i, count = (long)(size / 2);
            unsigned char *raw = malloc(size ? size : 1);
            pcm = malloc(sizeof(int16_t) * (size_t)(count ? count : 1));
            if (!raw || !pcm || fread(raw, 1, size, f) != size) {
                fprintf(stderr, "tinyasc_c: %s: truncated or too large\n", path);
                free(raw);
                free(pcm);
                fclose(f);
                return NULL;
            }
            for (i = 0; i < count; i++)
                pcm[i] = (int16_t)u16le(raw + 2 * i);
            free(raw);
            *n = count;
            fclose(f);
            return pcm;
        } else {
            fseek(f, (long)(size + (size & 1)), SEEK_CUR);
        }
    }
    fprintf(stderr, "tinyasc_c: %s: no 16-bit PCM data chunk\n", path);
    fclose(f);
    return NULL;
}

static int digits = 6; /* decimals of the printed probabilities (`tinyasc predict` prints 6) */

static int classify_file(const char *path)
{
    long n = 0, start;
    double total[TA_NUM_CLASSES] = {0};
    int k, best = 0;
    int16_t *pcm = read_wav(path, &n);
    if (!pcm)
        return 1;
    for (start = 0; start == 0 || start < n; start += TA_WINDOW_SAMPLES) {
        long valid = n - start < TA_WINDOW_SAMPLES ? n - start : TA_WINDOW_SAMPLES;
        float logits[TA_NUM_CLASSES], probs[TA_NUM_CLASSES];
        if (valid < 0)
            valid = 0;
        ta_classify_window(pcm + start, valid, logits);
        ta_softmax(logits, probs);
        for (k = 0; k < TA_NUM_CLASSES; k++)
            total[k] += (n > 0 ? (double)valid / (double)n : 1.0) * probs[k];
    }
    free(pcm);
    for (k = 1; k < TA_NUM_CLASSES; k++)
        if (total[k] > total[best])
            best = k;
    printf("%s\t%s", path, ta_classes[best]);
    for (k = 0; k < TA_NUM_CLASSES; k++)
        printf("\t%.*f", digits, total[k]);
    printf("\n");
    return 0;
}

static int features_of(const char *path)
{
    long n = 0;
    int16_t *pcm = read_wav(path, &n);
    const float *x;
    if (!pcm)
        return 1;
    x = ta_features(pcm, n);
    fwrite(x, sizeof(float), (size_t)TA_N_MELS * TA_FRAMES, stdout);
    free(pcm);
    return 0;
}

/* one label per full window of stdin, flushed; memory: one window of samples + N windows of probabilities.
 * Each read asks for at most the bytes the current window still lacks, so a label is printed as soon as its
 * window's last sample arrives (fread waits for all the bytes it is asked for). */
static int stream(int smooth)
{
    static unsigned char raw[2 * TA_WINDOW_SAMPLES];
    static int16_t pcm[TA_WINDOW_SAMPLES];
    float *history = calloc((size_t)smooth * TA_NUM_CLASSES, sizeof(float));
    size_t filled = 0, got;
    long window = 0, i;
    if (!history) {
        fprintf(stderr, "tinyasc_c: out of memory\n");
        return 1;
    }
    for (;;) {
        size_t want = sizeof raw - filled < 8192 ? sizeof raw - filled : 8192;
        got = fread(raw + filled, 1, want, stdin);
        if (got == 0)
            break;
        filled += got;
        if (filled == sizeof raw) {
            float logits[TA_NUM_CLASSES], mean[TA_NUM_CLASSES];
            int k, j, best = 0, count = window + 1 < smooth ? (int)window + 1 : smooth;
            for (i = 0; i < TA_WINDOW_SAMPLES; i++)
                pcm[i] = (int16_t)u16le(raw + 2 * i);
            ta_classify_window(pcm, TA_WINDOW_SAMPLES, logits);
            ta_softmax(logits, history + (window % smooth) * TA_NUM_CLASSES);
            for (k = 0; k < TA_NUM_CLASSES; k++) {
                mean[k] = 0.0f;
                for (j = 0; j < count; j++)
                    mean[k] += history[j * TA_NUM_CLASSES + k] / (float)count;
                if (mean[k] > mean[best])
                    best = k;
            }
            printf("%ld\t%s\t%.4f\n", window, ta_classes[best], mean[best]);
            fflush(stdout);
            window++;
            filled = 0;
        }
    }
    free(history);
    return 0;
}

int main(int argc, char **argv)
{
    int i, status = 0, smooth = 1;
    if (argc >= 2 && !strcmp(argv[1], "--stream")) {
        if (argc == 4 && !strcmp(argv[2], "--smooth"))
            smooth = atoi(argv[3]);
        if ((argc != 2 && argc != 4) || smooth < 1) {
            fprintf(stderr, "usage: %s --stream [--smooth N>=1]\n", argv[0]);
            return 2;
        }
        return stream(smooth);
    }
    if (argc == 3 && !strcmp(argv[1], "--features"))
        return features_of(argv[2]);
    if (argc >= 3 && !strcmp(argv[1], "--digits")) {
        digits = atoi(argv[2]);
        argv += 2;
        argc -= 2;
    }
    if (argc < 2 || argv[1][0] == '-' || digits < 1 || digits > 12) {
        fprintf(stderr, "usage: %s [--digits 1..12] FILE.wav... | --features FILE.wav | --stream [--smooth N]\n", argv[0]);
        return 2;
    }
    printf("filename\tscene_label");
    for (i = 0; i < TA_NUM_CLASSES; i++)
        printf("\t%s", ta_classes[i]);
    printf("\n");
    for (i = 1; i < argc; i++)
        status |= classify_file(argv[i]);
    return status;
}

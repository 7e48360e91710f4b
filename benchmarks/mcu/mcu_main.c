/* Classifies the clips compiled into clips.c with an exported tinyasc model and prints, per clip, the logits
 * and probabilities as IEEE-754 bit patterns (so that the host and the emulated Cortex-M builds can be
 * compared exactly). On the MCU (TA_MCU) it also prints the CMSDK timer ticks of each ta_classify_window call
 * (under `qemu -icount shift=0` one guest instruction = 1 ns of virtual time, the timer runs at 25 MHz) and the
 * peak stack of that call, measured by painting the free stack before it. ta_classify_window is called as its
 * two halves, ta_features (front end) and ta_network, so that each is timed. Output lines:
 *   C <clip> <top class> <logit bits x K> <probability bits x K>
 *   T <clip> <ticks of the window> <ticks of the front end> <stack bytes>   (MCU only)
 *   K <loop instructions> <timer ticks>           (MCU only: calibration of ticks against a known loop) */
#include "tinyasc.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>

extern const int16_t ta_clips[][TA_WINDOW_SAMPLES];
extern const int ta_n_clips;

static unsigned long bits(float v)
{
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    return (unsigned long)u;
}

#ifdef TA_MCU
#define TIMER0 ((volatile uint32_t *)0x40000000) /* CMSDK APB timer 0: CTRL, VALUE, RELOAD */
#define PAINT 0xA5C3E17Bu
extern uint32_t __stack_limit[];

static void timer_start(void)
{
    TIMER0[0] = 0;
    TIMER0[2] = 0xFFFFFFFFu;
    TIMER0[1] = 0xFFFFFFFFu;
    TIMER0[0] = 1; /* enable, no interrupt, counts down at PCLK */
}

static uint32_t timer_now(void)
{
    return TIMER0[1];
}

/* fill the free stack below this function's frame (minus a margin) with PAINT */
static __attribute__((noinline)) void paint_stack(void)
{
    uint32_t *p = __stack_limit, *sp;
    __asm volatile("mov %0, sp" : "=r"(sp));
    while (p < sp - 16)
        *p++ = PAINT;
}

/* bytes between `top` and the lowest word below it that no longer holds PAINT */
static unsigned long stack_used(const uint32_t *top)
{
    const uint32_t *p = __stack_limit;
    while (p < top && *p == PAINT)
        p++;
    return (unsigned long)((const char *)top - (const char *)p);
}

static __attribute__((noinline)) void calibrate(void)
{
    uint32_t t0, t1, n = 1000000;
    t0 = timer_now();
    /* 2 instructions per iteration (subs, bne) */
    __asm volatile("1: subs %0, %0, #1\n\tbne 1b" : "+r"(n) : : "cc");
    t1 = timer_now();
    printf("K %lu %lu\n", 2000000UL, (unsigned long)(t0 - t1));
}
#endif

int main(void)
{
    int i, k;
    for (i = 0; i < ta_n_clips; i++) {
        float logits[TA_NUM_CLASSES], probs[TA_NUM_CLASSES];
        int top;
#ifdef TA_MCU
        uint32_t t0, t1, t2, *top_sp;
        if (i == 0) {
            timer_start();
            calibrate();
        }
        __asm volatile("mov %0, sp" : "=r"(top_sp));
        paint_stack();
        t0 = timer_now();
#endif
        ta_features(ta_clips[i], TA_WINDOW_SAMPLES); /* = ta_classify_window, timed in two halves */
#ifdef TA_MCU
        t1 = timer_now();
#endif
        ta_network(logits);
#ifdef TA_MCU
        t2 = timer_now();
        printf("T %d %lu %lu %lu\n", i, (unsigned long)(t0 - t2), (unsigned long)(t0 - t1), stack_used(top_sp));
#endif
        top = ta_softmax(logits, probs);
        printf("C %d %d", i, top);
        for (k = 0; k < TA_NUM_CLASSES; k++)
            printf(" %08lx", bits(logits[k]));
        for (k = 0; k < TA_NUM_CLASSES; k++)
            printf(" %08lx", bits(probs[k]));
        printf("\n");
    }
    return 0;
}

/* Bare-metal start-up of the emulated Cortex-M runs (benchmarks/mcu_emulated.py): vector table, .data copy,
 * .bss clear, FPU on, newlib's semihosting I/O (librdimon), main, exit through semihosting. */
#include <stdint.h>
#include <stdlib.h>

extern uint32_t __data_load[], __data_start[], __data_end[], __bss_start__[], __bss_end__[], __stack_top[];
extern int main(void);
extern void initialise_monitor_handles(void);
extern void __libc_init_array(void);
extern void _exit(int);

/* -nostartfiles leaves out crti.o/crtn.o; newlib's __libc_init_array/__libc_fini_array still call these */
void _init(void) {}
void _fini(void) {}

void Reset_Handler(void)
{
    uint32_t *src = __data_load, *dst = __data_start;
    while (dst < __data_end)
        *dst++ = *src++;
    for (dst = __bss_start__; dst < __bss_end__;)
        *dst++ = 0;
    /* CP10 and CP11 full access (SCB->CPACR): the FPU is off after reset */
    *(volatile uint32_t *)0xE000ED88 |= 0xFu << 20;
    __asm volatile("dsb\n\tisb");
    initialise_monitor_handles();
    __libc_init_array();
    exit(main());
}

/* any fault or unexpected interrupt ends the run with status 99 (semihosting), never a silent hang */
void Default_Handler(void)
{
    _exit(99);
}

__attribute__((section(".vectors"), used)) static void (*const vectors[16])(void) = {
    (void (*)(void))__stack_top, Reset_Handler, Default_Handler, Default_Handler, Default_Handler,
    Default_Handler, Default_Handler, 0, 0, 0, 0, Default_Handler, Default_Handler, 0, Default_Handler,
    Default_Handler,
};

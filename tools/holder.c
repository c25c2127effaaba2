/* The process of a network holder container (mw.holder): it holds a component's network
 * namespace, so that the component's own container, which joins it, restarts without the
 * engine making the namespace, its interfaces, its address and its port proxy again (as the
 * kubelet's pause container holds a pod's). It only waits: no libc, a few hundred bytes
 * static, built FROM scratch. As PID 1 in its container it ignores SIGTERM (no handler), so
 * its container is created with StopSignal SIGKILL, and mw removes it with force. */
#if defined(__x86_64__)
#define SYS_PAUSE 34
static void wait_forever(void)
{
    for (;;) {
        long rax = SYS_PAUSE;      /* the call's number in, its result (-EINTR) out */
        __asm__ volatile("syscall" : "+a"(rax) : : "rcx", "r11", "memory");
    }
}
#elif defined(__aarch64__)
#define SYS_PPOLL 73   /* aarch64 has no pause(2): ppoll with no descriptors and no timeout */
static void wait_forever(void)
{
    for (;;) {
        register long x8 __asm__("x8") = SYS_PPOLL;
        register long x0 __asm__("x0") = 0, x1 __asm__("x1") = 0, x2 __asm__("x2") = 0,
                      x3 __asm__("x3") = 0;
        __asm__ volatile("svc 0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3) : "memory");
    }
}
#else
#error "tools/holder.c: add this architecture's pause system call"
#endif

void _start(void);
void _start(void) { wait_forever(); }

#include "CTetherRuntime.h"

#include <stddef.h>

// Defined by libswift_Concurrency (shared or static): a function pointer the runtime calls, when
// set, for every job it would otherwise hand to libdispatch's pool.
extern const void *swift_task_enqueueGlobal_hook;

int tether_install_enqueue_global_hook(const void *hook) {
    const void *expected = NULL;
    return __atomic_compare_exchange_n(&swift_task_enqueueGlobal_hook, &expected, hook, 0,
                                       __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST) ? 1 : 0;
}

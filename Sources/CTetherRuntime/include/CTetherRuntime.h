// CTetherRuntime: the Swift runtime's global-enqueue hook, reached at link time.
//
// SwiftNIO installs its event loops as the global executor by looking the hook up with dlsym,
// which finds nothing in a binary that links the Swift runtime statically (the one `make
// install` ships: the symbol is not in its dynamic symbol table). A reference from C resolves
// in either build.
#ifndef TETHER_CTETHERRUNTIME_H
#define TETHER_CTETHERRUNTIME_H

/// Sets the Swift runtime's `swift_task_enqueueGlobal_hook` to `hook` (a Swift
/// `@convention(thin)` function) if no hook is set: 1 if it was set by this call, else 0.
int tether_install_enqueue_global_hook(const void *_Nonnull hook);

#endif

// herald — a lock for very short critical sections.
#pragma once

#include <atomic>
#include <thread>

namespace herald::detail {

/// Meets Lockable. For a session's queue, which every delivery locks for a push_back: there,
/// std::mutex cost two atomic read-modify-write instructions per delivery (lock and
/// unlock), each a full barrier that also waits for the cache misses in flight; this one
/// costs one, and unlocks with a plain store. A waiter spins briefly, then yields, so a
/// holder that was preempted is not spun against for a whole time slice.
class spin_lock {
public:
    void lock() noexcept {
        unsigned spins = 0;
        while (locked_.exchange(true, std::memory_order_acquire)) {
            do {
                if (++spins < 64) pause();
                else std::this_thread::yield();
            } while (locked_.load(std::memory_order_relaxed));
        }
    }
    bool try_lock() noexcept {
        return !locked_.load(std::memory_order_relaxed) && !locked_.exchange(true, std::memory_order_acquire);
    }
    void unlock() noexcept { locked_.store(false, std::memory_order_release); }

private:
    static void pause() noexcept {
#if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
#elif defined(__aarch64__)
        asm volatile("yield");
#endif
    }

    std::atomic<bool> locked_{false};
};

} // namespace herald::detail

// herald — a shared_ptr that threads may read and replace concurrently.
#pragma once

#include <herald/detail/spin_lock.hpp>

#include <memory>
#include <mutex>
#include <utility>

namespace herald::detail {

/// What std::atomic_load/atomic_store on a shared_ptr did (deprecated in C++20), and
/// std::atomic<std::shared_ptr> does (C++20 only), for C++17 and C++20 alike. A read costs
/// the spin lock's one exchange and the copy's reference count increment; libstdc++'s
/// std::atomic_load took a mutex from a shared pool for the same copy.
template <class T>
class atomic_shared_ptr {
public:
    explicit atomic_shared_ptr(std::shared_ptr<T> p = nullptr) noexcept : p_(std::move(p)) {}
    atomic_shared_ptr(const atomic_shared_ptr&) = delete;
    atomic_shared_ptr& operator=(const atomic_shared_ptr&) = delete;

    std::shared_ptr<T> load() const noexcept {
        std::lock_guard<spin_lock> lock(mu_);
        return p_;
    }

    void store(std::shared_ptr<T> p) noexcept {
        {
            std::lock_guard<spin_lock> lock(mu_);
            p_.swap(p);
        }
        // `p` now holds the old value: released here, outside the lock (its destructor may be long).
    }

private:
    mutable spin_lock mu_;
    std::shared_ptr<T> p_;
};

} // namespace herald::detail

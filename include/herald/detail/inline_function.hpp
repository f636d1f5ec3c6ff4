// herald — a move-only `void()` callable that keeps a small callable in place (internal).
#pragma once

#include <cstddef>
#include <new>
#include <type_traits>
#include <utility>

namespace herald::detail {

/// Like std::function<void()>, move-only, but a callable of up to two pointers is kept in the
/// object itself even when it is not trivially copyable. libstdc++'s std::function allocates
/// for any callable that is not trivially copyable: a lambda holding a std::weak_ptr (each
/// WebSocket connection's wake) cost 32 bytes of heap per connection. Larger callables are
/// allocated, as std::function does.
class inline_function {
public:
    inline_function() noexcept = default;
    inline_function(std::nullptr_t) noexcept {}

    template <class F, class D = std::decay_t<F>,
              class = std::enable_if_t<!std::is_same_v<D, inline_function> && std::is_invocable_r_v<void, D&>>>
    inline_function(F&& f) {
        if constexpr (std::is_constructible_v<bool, const D&>) {
            if (!static_cast<bool>(f)) return;  // an empty std::function or a null pointer: empty
        }
        if constexpr (fits<D>) {
            ::new (static_cast<void*>(buf_)) D(std::forward<F>(f));
            ops_ = &inline_ops<D>;
        } else {
            *reinterpret_cast<D**>(buf_) = new D(std::forward<F>(f));
            ops_ = &heap_ops<D>;
        }
    }

    inline_function(inline_function&& o) noexcept { take(o); }
    inline_function& operator=(inline_function&& o) noexcept {
        if (this != &o) {
            reset();
            take(o);
        }
        return *this;
    }
    inline_function(const inline_function&) = delete;
    inline_function& operator=(const inline_function&) = delete;
    ~inline_function() { reset(); }

    explicit operator bool() const noexcept { return ops_ != nullptr; }
    /// Calls the callable (there must be one).
    void operator()() const { ops_->call(const_cast<unsigned char*>(buf_)); }

private:
    struct ops {
        void (*call)(void*);
        void (*move)(void* from, void* to) noexcept;  // leaves `from` destroyed
        void (*destroy)(void*) noexcept;
    };

    static constexpr std::size_t size = 2 * sizeof(void*);
    template <class D>
    static constexpr bool fits =
        sizeof(D) <= size && alignof(D) <= alignof(void*) && std::is_nothrow_move_constructible_v<D>;

    template <class D>
    static constexpr ops inline_ops = {
        [](void* p) { (*static_cast<D*>(p))(); },
        [](void* from, void* to) noexcept {
            ::new (to) D(std::move(*static_cast<D*>(from)));
            static_cast<D*>(from)->~D();
        },
        [](void* p) noexcept { static_cast<D*>(p)->~D(); },
    };
    template <class D>
    static constexpr ops heap_ops = {
        [](void* p) { (**static_cast<D**>(p))(); },
        [](void* from, void* to) noexcept { *static_cast<D**>(to) = *static_cast<D**>(from); },
        [](void* p) noexcept { delete *static_cast<D**>(p); },
    };

    void take(inline_function& o) noexcept {
        if (!o.ops_) return;
        o.ops_->move(o.buf_, buf_);
        ops_ = std::exchange(o.ops_, nullptr);
    }
    void reset() noexcept {
        if (ops_) std::exchange(ops_, nullptr)->destroy(buf_);
    }

    alignas(void*) unsigned char buf_[size];
    const ops* ops_ = nullptr;
};

} // namespace herald::detail

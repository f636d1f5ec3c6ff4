// What an in-memory client received, and the small helpers every hub test needs: one copy,
// shared by tests/core and tests/cluster.
#pragma once

#include <herald/frame.hpp>
#include <herald/transport/inmemory.hpp>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

namespace herald::test {

/// The frames a client received, in order, with the questions tests ask of them.
struct received {
    std::vector<frame_ptr> frames;

    /// Appends what `c` holds now.
    received& take(transport::inmemory::client& c) {
        for (auto& f : c.receive()) frames.push_back(std::move(f));
        return *this;
    }

    /// The frames of type `t` (of `channel`, when given), in order.
    std::vector<const frame*> of(frame_type t) const {
        std::vector<const frame*> out;
        for (const auto& f : frames)
            if (f->type == t) out.push_back(f.get());
        return out;
    }
    std::vector<const frame*> of(frame_type t, std::string_view channel) const {
        std::vector<const frame*> out;
        for (const frame* f : of(t))
            if (f->channel == channel) out.push_back(f);
        return out;
    }
    std::vector<const frame*> subscribed() const { return of(frame_type::subscribed); }

    /// The last frame of type `t`, or null.
    const frame* last_of(frame_type t) const {
        for (auto it = frames.rbegin(); it != frames.rend(); ++it)
            if ((*it)->type == t) return it->get();
        return nullptr;
    }

    /// The offsets of the messages received (of `channel`, when given), in order.
    std::vector<std::uint64_t> offsets() const { return offsets_of(of(frame_type::message)); }
    std::vector<std::uint64_t> offsets(std::string_view channel) const {
        return offsets_of(of(frame_type::message, channel));
    }

private:
    static std::vector<std::uint64_t> offsets_of(const std::vector<const frame*>& messages) {
        std::vector<std::uint64_t> o;
        for (const frame* f : messages) o.push_back(f->pos.offset);
        return o;
    }
};

/// What `c` holds now.
inline received drain(transport::inmemory::client& c) {
    received r;
    r.take(c);
    return r;
}

/// from, from + 1, ..., to: the offsets a contiguous stream delivers.
inline std::vector<std::uint64_t> range(std::uint64_t from, std::uint64_t to) {
    std::vector<std::uint64_t> v;
    for (auto i = from; i <= to; ++i) v.push_back(i);
    return v;
}

/// A small JSON payload that says which message it is: `{"n":i}`.
inline std::string payload(int i) { return "{\"n\":" + std::to_string(i) + "}"; }

/// Load factor: HERALD_STRESS_SCALE=10 divides the loads of stress tests by ten (sanitizer builds).
inline int scale() {
    const char* s = std::getenv("HERALD_STRESS_SCALE");
    return s ? std::max(1, std::atoi(s)) : 1;
}

} // namespace herald::test

// herald — a connection's queue of unwritten bytes, laid out for gathered non-blocking writes:
// owned strings (HTTP heads, control frames) and shared frames (one publish's text, written by
// every subscriber from the same buffer) behind a short copied prefix (a WebSocket header).
#pragma once

#include <herald/frame.hpp>
#include <herald/net/connection.hpp>

#include <asio/buffer.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace herald::net::detail {

/// The bytes a connection has yet to write, in order. Not thread-safe (the connection's strand).
///
/// A write loop: `while (!q.empty()) { n = socket.write_some(q.buffers(), ec); ...; q.consume(n); }`
/// then `q.clear()`.
class write_queue {
public:
    /// asio's gather limit per system call.
    static constexpr std::size_t max_buffers = 64;

    void push(std::string bytes) {
        bytes_ += bytes.size();
        out_.emplace_back();
        out_.back().owned = std::move(bytes);
    }

    /// `prefix` (copied, at most connection::max_prefix bytes), then the frame's shared text.
    void push_shared(std::string_view prefix, frame_ptr f) {
        chunk c;
        const std::size_t n = std::min(prefix.size(), c.hdr.size());
        std::copy_n(prefix.data(), n, c.hdr.data());
        c.hdr_len = static_cast<std::uint8_t>(n);
        c.frame = std::move(f);
        bytes_ += c.size();
        out_.push_back(std::move(c));
    }

    /// Nothing left to write (what was written may still hold memory until clear()).
    bool empty() const noexcept { return head_ == out_.size(); }
    /// Whether anything was queued since the last clear().
    bool queued() const noexcept { return !out_.empty(); }
    /// Bytes not yet written.
    std::size_t bytes() const noexcept { return bytes_; }

    /// The next bytes to write, up to 32 frames (two buffers each), valid until the next call.
    const std::vector<asio::const_buffer>& buffers() {
        // One vector per thread: the caller writes them at once, and an idle connection
        // keeps none.
        thread_local std::vector<asio::const_buffer> bufs_;
        bufs_.clear();
        std::size_t skip = skip_;
        for (std::size_t i = head_; i < out_.size() && bufs_.size() + 2 <= max_buffers; ++i, skip = 0) {
            const chunk& c = out_[i];
            if (!c.frame) {
                bufs_.emplace_back(c.owned.data() + skip, c.owned.size() - skip);
            } else if (skip < c.hdr_len) {
                bufs_.emplace_back(c.hdr.data() + skip, c.hdr_len - skip);
                bufs_.emplace_back(c.frame->text.data(), c.frame->text.size());
            } else {
                bufs_.emplace_back(c.frame->text.data() + (skip - c.hdr_len), c.frame->text.size() - (skip - c.hdr_len));
            }
        }
        return bufs_;
    }

    /// Drops `n` written bytes from the front, releasing each chunk once it is all written.
    void consume(std::size_t n) {
        bytes_ -= std::min(n, bytes_);
        while (n > 0 && head_ < out_.size()) {
            const std::size_t left = out_[head_].size() - skip_;
            if (n < left) { skip_ += n; return; }
            n -= left;
            out_[head_].frame.reset();
            out_[head_].owned = std::string();
            ++head_;
            skip_ = 0;
        }
    }

    /// Empties the queue; memory a burst grew is given back.
    void clear() {
        out_.clear();
        head_ = skip_ = bytes_ = 0;
        if (out_.capacity() > 256) std::vector<chunk>().swap(out_);
    }

    /// Gives the queue's storage back when nothing waits (an idle connection, once a second).
    void trim() {
        if (out_.empty() && out_.capacity()) std::vector<chunk>().swap(out_);
    }

private:
    struct chunk {
        std::string owned;
        frame_ptr frame;
        std::array<char, net::connection::max_prefix> hdr{};
        std::uint8_t hdr_len = 0;
        std::size_t size() const noexcept { return frame ? hdr_len + frame->text.size() : owned.size(); }
    };

    std::vector<chunk> out_;  // [head_] is partly written (skip_ bytes)
    std::size_t head_ = 0, skip_ = 0, bytes_ = 0;
};

} // namespace herald::net::detail

// The fuzzers of byte streams feed each input twice, to fresh readers: in one read, and in
// two reads split at a point the input picks (its last byte and its size), since TCP may cut
// a request or a frame anywhere. `Reader` has `bool feed(const char*, std::size_t)`, false
// once it gave up on the stream.
#pragma once

#include <cstddef>
#include <cstdint>

template <class Reader>
void feed_in_one_and_two_reads(const std::uint8_t* data, std::size_t size) {
    const char* bytes = reinterpret_cast<const char*>(data);
    {
        Reader whole;
        whole.feed(bytes, size);
    }
    if (size > 1) {
        const std::size_t split = 1 + (static_cast<std::size_t>(data[size - 1]) * 131 + size) % (size - 1);
        Reader parts;
        if (parts.feed(bytes, split)) parts.feed(bytes + split, size - split);
    }
}

// herald — the hub's channel index: names to shared channel states.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>
#include <utility>
#include <vector>

namespace herald::detail {

/// An open-addressing hash table from a name to a `std::shared_ptr<T>`, where `T` holds its
/// own name (`T::name`). The caller hashes (once, for the shard and the table). Linear
/// probing, power-of-two capacity, at most 3/4 full, erase by backward shift (no
/// tombstones). Not thread-safe.
///
/// Why not std::unordered_map: with ten thousand channels, a lookup there chased a bucket, a
/// node and the key's heap buffer, three cache misses in a row, and was the largest cost of
/// a publish. Here a lookup reads one slot (hash and pointer side by side, usually one
/// cache line) and then the channel itself, which the publish needs anyway.
template <class T>
class name_table {
public:
    /// The entry for `name`, or nullptr.
    const std::shared_ptr<T>* find(std::string_view name, std::uint64_t hash) const noexcept {
        if (slots_.empty()) return nullptr;
        for (std::size_t i = hash & mask();; i = (i + 1) & mask()) {
            const slot& s = slots_[i];
            if (!s.value) return nullptr;
            if (s.hash == hash && s.value->name == name) return &s.value;
        }
    }

    /// Adds `value` (whose name is not in the table yet). @returns the stored pointer.
    const std::shared_ptr<T>& insert(std::uint64_t hash, std::shared_ptr<T> value) {
        if ((size_ + 1) * 4 > slots_.size() * 3) grow();
        ++size_;
        return place(hash, std::move(value));
    }

    /// Removes the entry for `name`, if any.
    void erase(std::string_view name, std::uint64_t hash) noexcept {
        if (slots_.empty()) return;
        std::size_t i = hash & mask();
        for (;; i = (i + 1) & mask()) {
            if (!slots_[i].value) return;
            if (slots_[i].hash == hash && slots_[i].value->name == name) break;
        }
        // Shift back the entries after it that would no longer be found past the hole.
        for (std::size_t j = (i + 1) & mask(); slots_[j].value; j = (j + 1) & mask()) {
            const std::size_t home = slots_[j].hash & mask();
            const bool movable = i <= j ? (home <= i || home > j) : (home <= i && home > j);
            if (movable) {
                slots_[i] = std::move(slots_[j]);
                i = j;
            }
        }
        slots_[i] = slot{};
        --size_;
    }

    /// Calls `f(const std::shared_ptr<T>&)` for each entry.
    template <class F>
    void for_each(F&& f) const {
        for (const slot& s : slots_)
            if (s.value) f(s.value);
    }

    std::size_t size() const noexcept { return size_; }

private:
    struct slot {
        std::uint64_t hash = 0;
        std::shared_ptr<T> value;  // empty: a free slot
    };

    std::size_t mask() const noexcept { return slots_.size() - 1; }

    const std::shared_ptr<T>& place(std::uint64_t hash, std::shared_ptr<T> value) {
        std::size_t i = hash & mask();
        while (slots_[i].value) i = (i + 1) & mask();
        slots_[i].hash = hash;
        slots_[i].value = std::move(value);
        return slots_[i].value;
    }

    void grow() {
        std::vector<slot> old(slots_.empty() ? 16 : slots_.size() * 2);
        old.swap(slots_);
        for (slot& s : old)
            if (s.value) place(s.hash, std::move(s.value));
    }

    std::vector<slot> slots_;
    std::size_t size_ = 0;
};

} // namespace herald::detail

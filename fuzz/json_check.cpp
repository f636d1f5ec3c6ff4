// herald-fuzz-json-check: differential. herald::detail::is_json_value must give
// nlohmann::json::accept's verdict on every input, except where json_check.hpp says it differs
// on purpose: it rejects a leading byte-order mark, a NUL byte, and nesting deeper than
// herald::detail::max_json_depth (measured here with nlohmann's own SAX parser). Traps on any
// other disagreement, and whenever herald accepts what nlohmann rejects.
#include <herald/detail/json_check.hpp>

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace {

// The deepest nesting nlohmann sees while parsing (it stops at the first error).
struct depth_counter : nlohmann::json_sax<nlohmann::json> {
    std::size_t depth = 0, max = 0;
    bool open() { max = std::max(max, ++depth); return true; }
    bool close() { --depth; return true; }
    bool null() override { return true; }
    bool boolean(bool) override { return true; }
    bool number_integer(number_integer_t) override { return true; }
    bool number_unsigned(number_unsigned_t) override { return true; }
    bool number_float(number_float_t, const string_t&) override { return true; }
    bool string(string_t&) override { return true; }
    bool binary(binary_t&) override { return true; }
    bool start_object(std::size_t) override { return open(); }
    bool key(string_t&) override { return true; }
    bool end_object() override { return close(); }
    bool start_array(std::size_t) override { return open(); }
    bool end_array() override { return close(); }
    bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override { return false; }
};

bool differs_on_purpose(std::string_view s) {
    if (s.find('\0') != std::string_view::npos || s.substr(0, 3) == "\xEF\xBB\xBF") return true;
    depth_counter d;
    nlohmann::json::sax_parse(s, &d);
    return d.max > herald::detail::max_json_depth;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view s(reinterpret_cast<const char*>(data), size);
    const bool herald = herald::detail::is_json_value(s);
    const bool nlohmann = nlohmann::json::accept(s);
    if (herald == nlohmann) return 0;
    if (herald) __builtin_trap();                // herald accepted what is not JSON
    if (!differs_on_purpose(s)) __builtin_trap();  // herald refused JSON it should take
    return 0;
}

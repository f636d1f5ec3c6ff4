// herald — checking that a publisher's payload is one JSON value, without building it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace herald::detail {

/// Deepest nesting of arrays and objects herald accepts in client input: a publish payload
/// (error::invalid_payload past it) and a whole client frame (error::malformed_frame). A
/// value at the top level is at depth 0, `[1]` has depth 1, `[[1]]` depth 2. The limit is
/// checked on the bytes, before nlohmann builds anything: its dump() recurses once per
/// level, and an 80,000-deep array in a client frame used to overflow the server's stack.
/// No real payload nests this deep. A client frame may nest one level more than its
/// payload (the frame's own object), so that a client can publish what the server can.
inline constexpr std::size_t max_json_depth = 64;

// Why not nlohmann::json::accept: it runs the full lexer (a token buffer, a number
// conversion per number) and was the largest single cost of a publish with few subscribers.
// This is one pass over the bytes with no allocation. It accepts what nlohmann::json::accept
// accepts (tests/core/internals_test.cpp compares them on hand-picked and random inputs,
// fuzz/json_check.cpp on fuzzed ones), except three inputs: nesting deeper than
// max_json_depth, and two that are not JSON and would make the frames that embed them
// unreadable to a browser's JSON.parse: a leading byte-order mark and anything after a NUL
// byte, both of which nlohmann accepts.

namespace json_check {

inline bool is_ws(char c) noexcept { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
inline bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }

inline int hex(char c) noexcept {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// \uXXXX at p (p points at 'u'): the code unit, or -1.
inline long u_escape(const char*& p, const char* end) noexcept {
    if (end - p < 5) return -1;
    long v = 0;
    for (int i = 1; i <= 4; ++i) {
        const int h = hex(p[i]);
        if (h < 0) return -1;
        v = v * 16 + h;
    }
    p += 5;
    return v;
}

// A string, p at its opening quote; on success p is past the closing one. Control
// characters, bad escapes, unpaired surrogates and ill-formed UTF-8 (RFC 3629) fail.
inline bool scan_string(const char*& p, const char* end) noexcept {
    ++p;
    for (;;) {
        while (p != end && static_cast<unsigned char>(*p) >= 0x20 && static_cast<unsigned char>(*p) < 0x80 &&
               *p != '"' && *p != '\\')
            ++p;  // the common case: printable ASCII
        if (p == end) return false;
        const auto c = static_cast<unsigned char>(*p);
        if (c == '"') { ++p; return true; }
        if (c < 0x20) return false;
        if (c == '\\') {
            if (++p == end) return false;
            switch (*p) {
            case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't': ++p; continue;
            case 'u': {
                const long u = u_escape(p, end);
                if (u < 0 || (u >= 0xDC00 && u <= 0xDFFF)) return false;
                if (u >= 0xD800 && u <= 0xDBFF) {  // a high surrogate needs a low one next
                    if (end - p < 2 || p[0] != '\\' || p[1] != 'u') return false;
                    ++p;
                    const long low = u_escape(p, end);
                    if (low < 0xDC00 || low > 0xDFFF) return false;
                }
                continue;
            }
            default: return false;
            }
        }
        // UTF-8: the lead byte says how many continuation bytes follow and their range.
        int more;
        unsigned char lo = 0x80, hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF) more = 1;
        else if (c == 0xE0) { more = 2; lo = 0xA0; }
        else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) more = 2;
        else if (c == 0xED) { more = 2; hi = 0x9F; }
        else if (c == 0xF0) { more = 3; lo = 0x90; }
        else if (c >= 0xF1 && c <= 0xF3) more = 3;
        else if (c == 0xF4) { more = 3; hi = 0x8F; }
        else return false;
        if (end - p <= more) return false;
        ++p;
        for (int i = 0; i < more; ++i, ++p, lo = 0x80, hi = 0xBF) {
            const auto b = static_cast<unsigned char>(*p);
            if (b < lo || b > hi) return false;
        }
    }
}

// Whether a number whose significant digits are `digits` (no leading zero) and whose value
// is 0.digits x 10^k rounds to infinity as a double (nlohmann rejects it as an overflow).
// The threshold is the midpoint between the largest double and 2^1024, which rounds up.
inline bool overflows(std::string_view digits, long k) noexcept {
    static constexpr std::string_view midpoint =
        "179769313486231580793728971405303415079934132710037826936173778980444968292764750946649017977587207096"
        "330286416692887910946555547851940402630657488671505820681908902000708383676273854845817711531764475730"
        "270069855571366959622842914819860834936475292719074168444365510704342711559699508093042880177904174497792";
    if (digits.empty() || k < 309) return false;
    if (k > 309) return true;
    const std::size_t n = digits.size() < midpoint.size() ? digits.size() : midpoint.size();
    for (std::size_t i = 0; i < n; ++i)
        if (digits[i] != midpoint[i]) return digits[i] > midpoint[i];
    return digits.size() >= midpoint.size();  // equal so far: only a shorter one is below
}

// The significant digits of a number token that may be out of the double range, checked.
inline bool number_overflows(const char* b, const char* e) {
    if (*b == '-') ++b;
    const char* int_end = b;
    while (int_end != e && is_digit(*int_end)) ++int_end;
    const char* frac = int_end != e && *int_end == '.' ? int_end + 1 : int_end;
    const char* frac_end = frac;
    while (frac_end != e && is_digit(*frac_end)) ++frac_end;
    long exp = 0;
    if (frac_end != e) {  // e or E
        const char* q = frac_end + 1;
        const bool neg = *q == '-';
        if (*q == '+' || *q == '-') ++q;
        for (; q != e; ++q) exp = exp < 100000 ? exp * 10 + (*q - '0') : exp;
        if (neg) exp = -exp;
    }
    std::string digits;  // rare path: only numbers that reach 10^308 get here
    long k = exp;
    if (*b != '0') {
        digits.assign(b, int_end);
        k += static_cast<long>(int_end - b);
    } else {
        while (frac != frac_end && *frac == '0') { ++frac; --k; }
    }
    digits.append(frac, frac_end);
    while (!digits.empty() && digits.back() == '0') digits.pop_back();
    return overflows(digits, k);
}

// A number, p at its first character; on success p is past it.
inline bool scan_number(const char*& p, const char* end) {
    const char* b = p;
    if (*p == '-') ++p;
    if (p == end) return false;
    long magnitude = 0;  // a bound on the decimal exponent of the value
    if (*p == '0') {
        ++p;
    } else if (*p >= '1' && *p <= '9') {
        while (p != end && is_digit(*p)) { ++p; ++magnitude; }
    } else {
        return false;
    }
    if (p != end && *p == '.') {
        if (++p == end || !is_digit(*p)) return false;
        while (p != end && is_digit(*p)) ++p;
    }
    if (p != end && (*p == 'e' || *p == 'E')) {
        if (++p != end && (*p == '+' || *p == '-')) ++p;
        if (p == end || !is_digit(*p)) return false;
        const bool neg = p[-1] == '-';
        long exp = 0;
        while (p != end && is_digit(*p)) { exp = exp < 100000 ? exp * 10 + (*p - '0') : exp; ++p; }
        magnitude += neg ? -exp : exp;
    }
    return magnitude < 309 || !number_overflows(b, p);
}

inline bool scan_literal(const char*& p, const char* end, std::string_view word) noexcept {
    if (static_cast<std::size_t>(end - p) < word.size() || std::string_view(p, word.size()) != word) return false;
    p += word.size();
    return true;
}

// One value, p at its first character (whitespace before it skipped); on success p is past
// it. Fails on nesting deeper than max_json_depth.
inline bool scan_value(const char*& p, const char* end) {
    char open[max_json_depth];  // the containers we are in: '[' or '{'
    std::size_t depth = 0;
    auto skip_ws = [&] { while (p != end && is_ws(*p)) ++p; };
    // After '{' or ',' in an object: a key and its colon.
    auto key = [&] {
        skip_ws();
        if (p == end || *p != '"' || !scan_string(p, end)) return false;
        skip_ws();
        if (p == end || *p != ':') return false;
        ++p;
        return true;
    };

    for (;;) {
        // A value.
        skip_ws();
        if (p == end) return false;
        switch (*p) {
        case '{':
        case '[': {
            const char c = *p;
            if (depth == max_json_depth) return false;  // this one would be one level too deep
            ++p;
            skip_ws();
            if (p != end && *p == (c == '{' ? '}' : ']')) { ++p; break; }
            open[depth++] = c;
            if (c == '{' && !key()) return false;
            continue;
        }
        case '"':
            if (!scan_string(p, end)) return false;
            break;
        case 't': if (!scan_literal(p, end, "true")) return false; break;
        case 'f': if (!scan_literal(p, end, "false")) return false; break;
        case 'n': if (!scan_literal(p, end, "null")) return false; break;
        default:
            if (*p != '-' && !is_digit(*p)) return false;
            if (!scan_number(p, end)) return false;
            break;
        }
        // After a value: close what ends here, then a comma leads to the next value.
        for (;;) {
            if (depth == 0) return true;
            skip_ws();
            if (p == end) return false;
            const char close = open[depth - 1] == '{' ? '}' : ']';
            if (*p == close) { ++p; --depth; continue; }
            if (*p != ',') return false;
            ++p;
            if (open[depth - 1] == '{' && !key()) return false;
            break;
        }
    }
}

} // namespace json_check

/// True when `text` is exactly one JSON value (RFC 8259), with optional whitespace around it,
/// nested at most max_json_depth deep.
inline bool is_json_value(std::string_view text) {
    using namespace json_check;
    const char* p = text.data();
    const char* const end = p + text.size();
    if (!scan_value(p, end)) return false;
    while (p != end && is_ws(*p)) ++p;
    return p == end;
}

/// Whether the arrays and objects of `text` nest at most `max_depth` deep, looking only at
/// brackets outside strings: a cheap check to run on untrusted text before a JSON parser
/// builds it. It says nothing of validity (an unbalanced `]` is left to the parser).
inline bool json_depth_within(std::string_view text, std::size_t max_depth = max_json_depth) noexcept {
    std::size_t depth = 0;
    bool in_string = false;
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (in_string) {
            if (c == '\\') ++i;  // the escaped character cannot end the string
            else if (c == '"') in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            if (++depth > max_depth) return false;
        } else if ((c == ']' || c == '}') && depth > 0) {
            --depth;
        }
    }
    return true;
}

} // namespace herald::detail

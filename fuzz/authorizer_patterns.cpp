// herald-fuzz-authorizer-patterns: rule_authorizer::matches(pattern, channel, principal) on
// input split at '\n' into pattern, channel and principal id. Checks: no crash, no hang, and
//  - a pattern without wildcard segments matches only itself (and, as a valid channel name, does);
//  - `**` alone matches every non-empty channel; `*` alone every one-segment channel;
//  - `{principal}` never matches for an anonymous principal;
//  - may() allows exactly when one of its rules matches.
#include <herald/authorizer.hpp>
#include <herald/channel.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace {

bool has_segment(std::string_view pattern, std::string_view segment) {
    for (;;) {
        const std::size_t dot = pattern.find('.');
        if (pattern.substr(0, dot) == segment) return true;
        if (dot == std::string_view::npos) return false;
        pattern.remove_prefix(dot + 1);
    }
}

std::string_view next_part(std::string_view& in) {
    const std::size_t nl = in.find('\n');
    const std::string_view part = in.substr(0, nl);
    in.remove_prefix(nl == std::string_view::npos ? in.size() : nl + 1);
    return part;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    std::string_view in(reinterpret_cast<const char*>(data), size);
    const std::string_view pattern = next_part(in), channel = next_part(in), id = next_part(in);
    const herald::principal who{std::string(id)}, anonymous{};
    using herald::rule_authorizer;

    const bool m = rule_authorizer::matches(pattern, channel, who);
    const bool m_anon = rule_authorizer::matches(pattern, channel, anonymous);
    const bool wild = has_segment(pattern, "*") || has_segment(pattern, "**") || has_segment(pattern, "{principal}");
    if (!wild) {
        if ((m || m_anon) && pattern != channel) __builtin_trap();
        if (pattern == channel && !herald::validate_channel(channel) && !(m && m_anon)) __builtin_trap();
    }
    if (has_segment(pattern, "{principal}") && m_anon) __builtin_trap();
    if (rule_authorizer::matches("**", channel, who) != !channel.empty()) __builtin_trap();
    if (rule_authorizer::matches("*", channel, who) != (!channel.empty() && channel.find('.') == std::string_view::npos))
        __builtin_trap();
    if (!herald::validate_channel(channel) && !who.anonymous() && !herald::validate_channel(who.id) &&
        who.id.find('.') == std::string::npos) {
        const std::string own = "user." + who.id + "." + std::string(channel);
        if (!rule_authorizer::matches("user.{principal}.**", own, who)) __builtin_trap();
    }

    rule_authorizer auth;
    auth.allow(herald::action::subscribe, std::string(pattern)).allow(herald::action::publish, "public.**");
    if (auth.may(who, herald::action::subscribe, channel) != m) __builtin_trap();
    if (auth.may(who, herald::action::publish, channel) != rule_authorizer::matches("public.**", channel, who))
        __builtin_trap();
    return 0;
}

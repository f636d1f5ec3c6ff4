// herald — who a client is, and what it may do. The Authorizer requirement, the refusing
// default, the explicitly insecure open policy and a rule-based authorizer.
#pragma once

#include <algorithm>
#include <cctype>
#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace herald {

/// The authenticated identity behind a session. An empty `id` is an anonymous user.
struct principal {
    using clock = std::chrono::system_clock;

    principal() = default;
    /// `principal{"alice"}`; `principal{"alice", token_expiry}`.
    principal(std::string id_, std::optional<clock::time_point> expires_ = std::nullopt)  // NOLINT: implicit on purpose
        : id(std::move(id_)), expires(expires_) {}

    std::string id;
    /// When the credentials that proved this identity stop being valid (a token's `exp`, a
    /// CMS session's end); none: they do not expire. Before it, the server asks the client
    /// to refresh them (a `refresh` frame, see peer::check_credentials); at it, the session
    /// ends with error::credentials_expired (WebSocket close 4003), and a connection whose
    /// credentials expired already is refused with 401 `credentials_expired`.
    std::optional<clock::time_point> expires;
    /// What others see of this principal in a channel's presence (herald.v2): one JSON value,
    /// e.g. `{"name":"Bob Smith"}`, at most presence_options::max_info_bytes (default 512);
    /// empty: null. Set by the authenticate hook; a member's info is the one of the session
    /// that made it a member (its first in the channel).
    std::string presence_info;

    bool anonymous() const noexcept { return id.empty(); }
};

/// What a client asks to do with a channel. `presence`: be listed in the channel's presence
/// while subscribed, see who else is, and hear their `join` and `leave` (herald.v2).
enum class action { subscribe, publish, presence };

/// The connection request an authorizer sees: the HTTP request that opened the WebSocket or
/// carried the long-poll, with its headers (names compared case-insensitively) and cookies.
struct request_info {
    std::string method;
    std::string target;  ///< path and query, as sent
    std::string remote;  ///< peer address
    bool secure = false; ///< came over herald's own TLS (https, wss); a proxy's TLS is not seen here
    std::vector<std::pair<std::string, std::string>> headers;
    /// The credentials the client sent in-band (herald.js's `accessToken` option): the
    /// `access_token` query parameter of the request (WebSocket upgrade, poll, publish),
    /// percent-decoded; or, when the client refreshes its credentials on an open session,
    /// the `token` of its `refresh` frame (then `method`, `target` and `headers` are empty:
    /// an authenticate hook that accepts tokens reads them here). Empty when none came.
    std::string credentials;

    /// First value of header `name`, or empty.
    std::string_view header(std::string_view name) const noexcept {
        for (const auto& [k, v] : headers)
            if (k.size() == name.size() &&
                std::equal(k.begin(), k.end(), name.begin(), [](char a, char b) {
                    // ASCII only, as HTTP header names are: std::tolower is a call into the C
                    // locale per character (3 % of a long-poll server's time in a profile).
                    const auto fold = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + ('a' - 'A')) : c; };
                    return fold(a) == fold(b);
                }))
                return v;
        return {};
    }

    /// Value of cookie `name` from the Cookie header, or empty.
    std::string_view cookie(std::string_view name) const noexcept {
        std::string_view c = header("cookie");
        while (!c.empty()) {
            std::size_t end = c.find(';');
            std::string_view part = c.substr(0, end);
            while (!part.empty() && part.front() == ' ') part.remove_prefix(1);
            if (part.size() > name.size() && part.substr(0, name.size()) == name && part[name.size()] == '=')
                return part.substr(name.size() + 1);
            if (end == std::string_view::npos) break;
            c.remove_prefix(end + 1);
        }
        return {};
    }

    /// Value of query parameter `name` in the target (not percent-decoded), or empty.
    std::string_view query(std::string_view name) const noexcept {
        std::string_view t = target;
        std::size_t q = t.find('?');
        if (q == std::string_view::npos) return {};
        t.remove_prefix(q + 1);
        while (!t.empty()) {
            std::size_t end = t.find('&');
            std::string_view part = t.substr(0, end);
            if (part.size() > name.size() && part.substr(0, name.size()) == name && part[name.size()] == '=')
                return part.substr(name.size() + 1);
            if (end == std::string_view::npos) break;
            t.remove_prefix(end + 1);
        }
        return {};
    }
};

/// Authorizer requirements. A type `A` is an Authorizer when, for `a` of type `A`
/// (const), `r` a `const request_info&`, `p` a `const principal&` and `c` a `std::string_view`:
///
/// | expression                  | type                        | meaning                                   |
/// |-----------------------------|-----------------------------|-------------------------------------------|
/// | `a.authenticate(r)`         | `std::optional<principal>`  | who opened the connection, with an optional expiry; nullopt: 401. Asked again with `r.credentials` only when the client refreshes them |
/// | `a.may(p, action::subscribe, c)` | `bool`                 | checked on every subscribe and every poll |
/// | `a.may(p, action::publish, c)`   | `bool`                 | checked on every client publish           |
///
/// Both are called from transport threads, concurrently: they must be thread-safe.
///
/// Optionally, for presence (herald.v2):
///
/// | expression                  | type   | meaning                                                 |
/// |-----------------------------|--------|---------------------------------------------------------|
/// | `a.may_presence(p, c)`      | `bool` | whether `p`, subscribed to `c`, is listed in `c`'s presence, sees its members and hears its `join`/`leave`; and whether `p` may ask `c`'s members |
///
/// An authorizer without it allows presence nowhere (has_presence_check): presence reveals
/// who else reads a channel, so an authorizer written before presence existed must not grant
/// it by accident (a `may` that answers true to an action it does not know would). The hub
/// asks `may(p, action::presence, c)` of nobody; hub::may routes action::presence here.
template <class A, class = void>
struct is_authorizer : std::false_type {};

template <class A>
struct is_authorizer<
    A, std::void_t<decltype(std::declval<const A&>().authenticate(std::declval<const request_info&>())),
                   decltype(std::declval<const A&>().may(std::declval<const principal&>(), action::subscribe,
                                                         std::string_view{}))>>
    : std::bool_constant<
          std::is_convertible_v<decltype(std::declval<const A&>().authenticate(std::declval<const request_info&>())),
                                std::optional<principal>> &&
          std::is_convertible_v<decltype(std::declval<const A&>().may(std::declval<const principal&>(),
                                                                      action::subscribe, std::string_view{})),
                                bool>> {};

template <class A>
inline constexpr bool is_authorizer_v = is_authorizer<A>::value;

/// True when the Authorizer `A` offers the optional `may_presence(p, channel)`.
template <class A, class = void>
struct has_presence_check : std::false_type {};

template <class A>
struct has_presence_check<A, std::void_t<decltype(bool(std::declval<const A&>().may_presence(
                                 std::declval<const principal&>(), std::string_view{})))>> : std::true_type {};

/// The default, when no authorizer is set: everyone connects, anonymously, and may subscribe
/// to and publish on nothing (each subscribe and client publish gets the `forbidden` error
/// frame), and presence is off. The hub logs "no authorizer: every subscribe and publish is
/// refused; see README" once. Install rule_authorizer (or your own) to let clients in.
struct deny_all {
    std::optional<principal> authenticate(const request_info&) const { return principal{}; }
    bool may(const principal&, action, std::string_view) const { return false; }
};

/// Everyone connects, anonymously, and may subscribe and publish to any channel: another
/// user's notifications and the server's own channels included. For tests, benchmarks and
/// trusted networks only; hub::set_authorizer logs a warning when it is installed. It was
/// `allow_all`, the default, in 0.1: that name is gone (not a deprecated alias) so that code
/// that named it stops compiling and its author chooses rules or this name knowingly.
struct insecure_allow_all {
    std::optional<principal> authenticate(const request_info&) const { return principal{}; }
    bool may(const principal&, action, std::string_view) const { return true; }
    bool may_presence(const principal&, std::string_view) const { return true; }
};

/// Allows what its rules allow and refuses the rest. A pattern is a channel name whose
/// segments may be `*` (any one segment), `{principal}` (exactly the principal's id; never
/// matches an anonymous principal), or, as the last segment, `**` (one or more segments).
///
/// @code
/// herald::rule_authorizer auth([](const herald::request_info& r) -> std::optional<herald::principal> {
///     auto user = sessions.lookup(r.cookie("cms_session"));   // the CMS's own session store
///     if (!user) return std::nullopt;                           // 401
///     return herald::principal{user->name};
/// });
/// auth.allow(herald::action::subscribe, "projects.**");
/// auth.allow(herald::action::subscribe, "user.{principal}.**");
/// auth.allow(herald::action::presence, "projects.*");   // who else looks at a project
/// @endcode
///
/// Presence needs its own rule: a channel one may subscribe to carries no presence until a
/// presence rule matches it too (may_presence asks both).
class rule_authorizer {
public:
    using authenticate_function = std::function<std::optional<principal>(const request_info&)>;

    /// With no authenticate function, every connection is accepted as anonymous.
    explicit rule_authorizer(authenticate_function authenticate = {}) : authenticate_(std::move(authenticate)) {}

    /// Allows `what` on channels matching `pattern`. Not thread-safe: set rules up before use.
    rule_authorizer& allow(action what, std::string pattern) {
        rules_.push_back({what, std::move(pattern)});
        return *this;
    }

    std::optional<principal> authenticate(const request_info& r) const {
        if (!authenticate_) return principal{};
        return authenticate_(r);
    }

    bool may(const principal& p, action what, std::string_view channel) const {
        for (const auto& rule : rules_)
            if (rule.what == what && matches(rule.pattern, channel, p)) return true;
        return false;
    }

    /// Presence on `channel`: allowed by an action::presence rule and by an action::subscribe
    /// rule (a member is a subscriber).
    bool may_presence(const principal& p, std::string_view channel) const {
        return may(p, action::presence, channel) && may(p, action::subscribe, channel);
    }

    /// Whether `channel` matches `pattern` for principal `p` (see the class description).
    static bool matches(std::string_view pattern, std::string_view channel, const principal& p) {
        while (true) {
            const std::size_t pe = pattern.find('.');
            const std::string_view ps = pattern.substr(0, pe);
            if (ps == "**" && pe == std::string_view::npos) return !channel.empty();
            if (channel.empty()) return false;
            const std::size_t ce = channel.find('.');
            const std::string_view cs = channel.substr(0, ce);
            if (ps == "{principal}") {
                if (p.anonymous() || cs != p.id) return false;
            } else if (ps != "*" && ps != cs) {
                return false;
            }
            if (pe == std::string_view::npos || ce == std::string_view::npos)
                return pe == std::string_view::npos && ce == std::string_view::npos;
            pattern.remove_prefix(pe + 1);
            channel.remove_prefix(ce + 1);
        }
    }

private:
    struct rule {
        action what;
        std::string pattern;
    };
    authenticate_function authenticate_;
    std::vector<rule> rules_;
};

static_assert(is_authorizer_v<deny_all>);
static_assert(is_authorizer_v<insecure_allow_all>);
static_assert(is_authorizer_v<rule_authorizer>);
static_assert(!has_presence_check<deny_all>::value && has_presence_check<rule_authorizer>::value);

} // namespace herald

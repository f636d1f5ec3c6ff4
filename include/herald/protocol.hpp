// herald — the wire protocol (herald.v1, herald.v2): encoding server frames, parsing client
// frames, and which version a client and this server share. docs/protocol.md is the
// reference; every transport speaks these same frames.
#pragma once

#include <herald/backplane.hpp>
#include <herald/channel.hpp>
#include <herald/error.hpp>
#include <herald/frame.hpp>
#include <herald/detail/json_check.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

namespace herald {
namespace protocol {

/// The protocol versions this build speaks, newest first: the WebSocket subprotocol names,
/// the `protocol` field of `welcome` and of a long-poll answer, `/herald/info`'s `protocols`.
/// herald.v2 adds frames (presence) to herald.v1 and changes none of v1's; a client offers
/// every version it speaks and the server answers with the newest both know (negotiate()),
/// so that old pages keep working on new servers and new pages on old servers.
inline constexpr int latest_version = 2;
inline constexpr std::string_view version_names[] = {"herald.v1", "herald.v2"};

/// The name of version `v` (1 to latest_version).
constexpr std::string_view name_of(int v) noexcept {
    return version_names[static_cast<std::size_t>(std::clamp(v, 1, latest_version) - 1)];
}
/// The version a name stands for, or 0 for a name this build does not know.
constexpr int version_of(std::string_view name) noexcept {
    for (int v = 1; v <= latest_version; ++v)
        if (version_names[v - 1] == name) return v;
    return 0;
}

/// The version a client and this server share: the newest of `offered` (names, any order)
/// that is at most `max` (the server's newest, server_options::max_protocol_version). An
/// empty offer is herald.v1, as a client from before the negotiation offers nothing else;
/// 0 when the client offered versions and the server knows none of them.
template <class Names>
int negotiate(const Names& offered, int max = latest_version) {
    int best = 0;
    bool any = false;
    for (const auto& o : offered) {
        any = true;
        const int v = version_of(o);
        if (v && v <= max) best = std::max(best, v);
    }
    return any ? best : 1;
}

/// The versions a server whose newest is `max` speaks, newest first: "herald.v2, herald.v1".
inline std::string spoken(int max = latest_version) {
    std::string out;
    for (int v = std::clamp(max, 1, latest_version); v >= 1; --v) {
        if (!out.empty()) out += ", ";
        out += name_of(v);
    }
    return out;
}

/// herald.v1's name (what the first server and its clients spoke).
inline constexpr std::string_view name = version_names[0];

namespace detail {
inline void append_uint(std::string& out, std::uint64_t v) {
    char buf[24];
    char* p = buf + sizeof buf;
    do { *--p = char('0' + v % 10); v /= 10; } while (v);
    out.append(p, buf + sizeof buf);
}
// Epochs and channels are validated to need no escaping; other strings go through json.
inline void append_json_string(std::string& out, std::string_view s) {
    out += nlohmann::json(std::string(s)).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}
inline void append_request_id(std::string& out, std::uint64_t id) {
    if (id) { out += ",\"id\":"; append_uint(out, id); }
}
// Sets where frame::data() lies in the frame's text (private to frame, known to the encoder).
struct frame_access {
    static void set_data(frame& f, std::size_t at, std::size_t len) noexcept {
        f.data_at_ = at;
        f.data_len_ = len;
    }
};
} // namespace detail

/// Builds a message frame. `data` must already be one valid JSON value (the hub checks it
/// at publish); it is embedded as is.
inline frame_ptr make_message(std::string channel, position pos, std::string_view data) {
    auto f = std::make_shared<frame>();
    f->type = frame_type::message;
    std::string& t = f->text;
    t.reserve(64 + channel.size() + pos.epoch.size() + data.size());
    t += "{\"type\":\"message\",\"channel\":\"";
    t += channel;
    t += "\",\"epoch\":\"";
    t += pos.epoch;
    t += "\",\"offset\":";
    detail::append_uint(t, pos.offset);
    t += ",\"data\":";
    detail::frame_access::set_data(*f, t.size(), data.size());
    t += data;
    t += '}';
    f->channel = std::move(channel);
    f->pos = std::move(pos);
    return f;
}

/// `subscribed`: the subscription is live from `head`; `recovered` says whether every message
/// after the client's `since` follows (true) or the client must resync (false).
inline frame_ptr make_subscribed(std::string channel, position head, bool recovered, std::uint64_t id = 0) {
    auto f = std::make_shared<frame>();
    f->type = frame_type::subscribed;
    std::string& t = f->text;
    t += "{\"type\":\"subscribed\",\"channel\":\"";
    t += channel;
    t += "\",\"epoch\":\"";
    t += head.epoch;
    t += "\",\"offset\":";
    detail::append_uint(t, head.offset);
    t += recovered ? ",\"recovered\":true" : ",\"recovered\":false";
    detail::append_request_id(t, id);
    t += '}';
    f->channel = std::move(channel);
    f->pos = std::move(head);
    f->recovered = recovered;
    f->request_id = id;
    return f;
}

/// `unsubscribed`: the session no longer follows `channel`; `id` echoes the request's.
inline frame_ptr make_unsubscribed(std::string channel, std::uint64_t id = 0) {
    auto f = std::make_shared<frame>();
    f->type = frame_type::unsubscribed;
    f->text = "{\"type\":\"unsubscribed\",\"channel\":\"" + channel + "\"";
    detail::append_request_id(f->text, id);
    f->text += '}';
    f->channel = std::move(channel);
    f->request_id = id;
    return f;
}

/// `published`: the acknowledgement of a client's publish, with the message's position in
/// `channel`; `id` echoes the request's.
inline frame_ptr make_published(std::string channel, position pos, std::uint64_t id = 0) {
    auto f = std::make_shared<frame>();
    f->type = frame_type::published;
    std::string& t = f->text;
    t += "{\"type\":\"published\",\"channel\":\"";
    t += channel;
    t += "\",\"epoch\":\"";
    t += pos.epoch;
    t += "\",\"offset\":";
    detail::append_uint(t, pos.offset);
    detail::append_request_id(t, id);
    t += '}';
    f->channel = std::move(channel);
    f->pos = std::move(pos);
    f->request_id = id;
    return f;
}

/// `error`: `code` by its wire name, a readable `message`, and the channel and request id it
/// concerns when there is one. `channel` is echoed only when it is a valid name.
inline frame_ptr make_error(std::error_code code, std::string_view channel = {}, std::uint64_t id = 0,
                            std::string_view message = {}) {
    auto f = std::make_shared<frame>();
    f->type = frame_type::error;
    std::string& t = f->text;
    t += "{\"type\":\"error\",\"code\":\"";
    t += to_wire(code);
    t += "\",\"message\":";
    const std::string msg = message.empty() ? code.message() : std::string(message);
    const std::size_t data_at = t.size() + 1;
    detail::append_json_string(t, msg);
    detail::frame_access::set_data(*f, data_at, t.size() - 1 - data_at);
    if (!channel.empty() && is_valid_channel(channel)) {
        t += ",\"channel\":\"";
        t += channel;
        t += '"';
        f->channel = std::string(channel);
    }
    detail::append_request_id(t, id);
    t += '}';
    f->code = code;
    f->request_id = id;
    const int counted = code.category() == error_category() && code.value() > 0 && code.value() < error_count ? code.value() : 0;
    herald::detail::errors_sent()[static_cast<std::size_t>(counted)].fetch_add(1, std::memory_order_relaxed);
    return f;
}

/// `welcome`: first frame on every connection. `transports` lists those enabled on the server
/// so that a client can skip the ones that are off.
inline frame_ptr make_welcome(std::string_view session_id, std::chrono::milliseconds heartbeat,
                              const std::vector<std::string>& transports, std::string_view server_id = {},
                              int version = 1) {
    auto f = std::make_shared<frame>();
    f->type = frame_type::welcome;
    nlohmann::json j = {{"type", "welcome"},
                        {"protocol", std::string(name_of(version))},
                        {"session", std::string(session_id)},
                        {"heartbeat", heartbeat.count()},
                        {"transports", transports}};
    if (!server_id.empty()) j["server"] = std::string(server_id);
    f->text = j.dump();
    return f;
}

/// `ping`: the heartbeat (clients answer `pong`). One frame, shared by every call.
inline frame_ptr make_ping() {
    static const frame_ptr ping = [] {
        auto f = std::make_shared<frame>();
        f->type = frame_type::ping;
        f->text = "{\"type\":\"ping\"}";
        return f;
    }();
    return ping;
}

/// `reconnect`: the server is going away; come back (to any server) after `after`.
inline frame_ptr make_reconnect(std::chrono::milliseconds after, std::string_view reason = "shutdown") {
    auto f = std::make_shared<frame>();
    f->type = frame_type::reconnect;
    f->text = "{\"type\":\"reconnect\",\"after\":";
    detail::append_uint(f->text, static_cast<std::uint64_t>(after.count()));
    f->text += ",\"reason\":";
    detail::append_json_string(f->text, reason);
    f->text += '}';
    f->retry_after = after;
    return f;
}

/// `refresh`: the session's credentials expire in `expires_in`; the client sends new ones
/// (a `refresh` request on WebSocket, its next poll's `access_token` on long-poll).
inline frame_ptr make_refresh(std::chrono::milliseconds expires_in) {
    auto f = std::make_shared<frame>();
    f->type = frame_type::refresh;
    f->text = "{\"type\":\"refresh\",\"expires_in\":";
    detail::append_uint(f->text, static_cast<std::uint64_t>(std::max<std::int64_t>(0, expires_in.count())));
    f->text += '}';
    f->retry_after = expires_in;
    return f;
}

/// `refreshed`: the answer to a client's `refresh`: its new credentials were taken, and
/// expire in `expires_in` (none: they do not expire).
inline frame_ptr make_refreshed(std::optional<std::chrono::milliseconds> expires_in, std::uint64_t id = 0) {
    auto f = std::make_shared<frame>();
    f->type = frame_type::refreshed;
    f->text = "{\"type\":\"refreshed\"";
    if (expires_in) {
        f->text += ",\"expires_in\":";
        detail::append_uint(f->text, static_cast<std::uint64_t>(std::max<std::int64_t>(0, expires_in->count())));
        f->retry_after = *expires_in;
    }
    detail::append_request_id(f->text, id);
    f->text += '}';
    f->request_id = id;
    return f;
}

// ---- presence (herald.v2) ---------------------------------------------------------------

namespace detail {
inline void append_member(std::string& t, const presence_member& m) {
    t += "{\"user\":";
    append_json_string(t, m.user);
    t += ",\"info\":";
    t += m.info.empty() ? std::string_view("null") : std::string_view(m.info);  // checked JSON (hub)
    t += '}';
}
} // namespace detail

/// `presence`: the answer to a client's presence request, the channel's members (herald.v2).
inline frame_ptr make_presence(std::string channel, const std::vector<presence_member>& members, std::uint64_t id = 0) {
    auto f = std::make_shared<frame>();
    f->type = frame_type::presence;
    std::string& t = f->text;
    t += "{\"type\":\"presence\",\"channel\":\"";
    t += channel;
    t += "\",\"members\":[";
    for (std::size_t i = 0; i < members.size(); ++i) {
        if (i) t += ',';
        detail::append_member(t, members[i]);
    }
    t += ']';
    detail::append_request_id(t, id);
    t += '}';
    f->channel = std::move(channel);
    f->request_id = id;
    return f;
}

/// `join` (with the member's info) or `leave`: a change of the channel's presence (herald.v2).
inline frame_ptr make_presence_event(std::string channel, const presence_event& e) {
    auto f = std::make_shared<frame>();
    f->type = e.joined ? frame_type::join : frame_type::leave;
    std::string& t = f->text;
    t += e.joined ? "{\"type\":\"join\",\"channel\":\"" : "{\"type\":\"leave\",\"channel\":\"";
    t += channel;
    t += "\",\"user\":";
    detail::append_json_string(t, e.member.user);
    if (e.joined) {
        t += ",\"info\":";
        t += e.member.info.empty() ? std::string_view("null") : std::string_view(e.member.info);
    }
    t += '}';
    f->channel = std::move(channel);
    return f;
}

// ---- long-poll answers and cursors (shared by the transports) ------------------------------

/// The body of every long-poll and `/herald/publish` answer, refusals included:
/// `{"frames":[…]}`, the frames' texts as they were encoded (not copied into JSON values).
/// `open` is how it opens: a poll that offered protocol versions is answered
/// `{"protocol":"herald.v2","frames":[…]}`.
inline std::string encode_poll_answer(const std::vector<frame_ptr>& frames, std::string_view open = "{\"frames\":[") {
    std::size_t n = open.size() + 2;
    for (const frame_ptr& f : frames) n += f->text.size() + 1;
    std::string body;
    body.reserve(n);
    body += open;
    for (std::size_t i = 0; i < frames.size(); ++i) {
        if (i) body += ',';
        body += frames[i]->text;
    }
    body += "]}";
    return body;
}

/// The `Retry-After` value (whole seconds) for a client told to come back after `after`:
/// rounded up past it, so that no client comes back early.
inline std::string retry_after(std::chrono::milliseconds after) {
    return std::to_string(after.count() / 1000 + 1);
}

/// A cursor as clients send it: `{"epoch": string, "offset": unsigned}` (other members
/// ignored), or null for none. @returns the position; nullopt for null (no cursor: `ec`
/// clear) and for anything else (`ec` = malformed_frame).
inline std::optional<position> parse_cursor(const nlohmann::json& j, std::error_code& ec) {
    ec.clear();
    if (j.is_null()) return std::nullopt;
    auto ep = j.is_object() ? j.find("epoch") : j.end();
    auto off = j.is_object() ? j.find("offset") : j.end();
    // is_number_unsigned: within std::uint64_t (nlohmann keeps larger integers as doubles).
    if (ep == j.end() || !ep->is_string() || off == j.end() || !off->is_number_unsigned()) {
        ec = error::malformed_frame;
        return std::nullopt;
    }
    return position{ep->get<std::string>(), off->get<std::uint64_t>()};
}


/// Deepest nesting of a client frame (a WebSocket message, a long-poll body): its own object,
/// then a payload nested up to herald::detail::max_json_depth. Checked on the bytes before
/// anything is parsed (error::malformed_frame past it).
inline constexpr std::size_t max_frame_depth = herald::detail::max_json_depth + 1;

namespace detail {
// The bytes of the value of the top-level member `key` of the JSON object `text` (the last
// one when the key repeats, the one nlohmann keeps), or nullopt. Meant for an object that
// nlohmann parsed already; anything else gives nullopt. Iterative: no recursion on nesting.
inline std::optional<std::string_view> member_bytes(std::string_view text, std::string_view key) {
    namespace jc = herald::detail::json_check;
    const char* p = text.data();
    const char* const end = p + text.size();
    auto skip_ws = [&] { while (p != end && jc::is_ws(*p)) ++p; };
    if (text.substr(0, 3) == "\xEF\xBB\xBF") p += 3;  // nlohmann skips a byte-order mark
    skip_ws();
    if (p == end || *p != '{') return std::nullopt;
    ++p;
    skip_ws();
    std::optional<std::string_view> found;
    if (p != end && *p == '}') return found;
    for (;;) {
        skip_ws();
        const char* k = p;
        if (p == end || *p != '"' || !jc::scan_string(p, end)) return std::nullopt;
        const std::string_view quoted(k, static_cast<std::size_t>(p - k));
        bool match = quoted.substr(1, quoted.size() - 2) == key;
        if (!match && quoted.find('\\') != std::string_view::npos) {  // an escaped key: decode it
            const nlohmann::json decoded = nlohmann::json::parse(quoted, nullptr, false);
            match = decoded.is_string() && decoded.get_ref<const std::string&>() == key;
        }
        skip_ws();
        if (p == end || *p != ':') return std::nullopt;
        ++p;
        skip_ws();
        const char* v = p;
        if (!jc::scan_value(p, end)) return std::nullopt;
        if (match) found = std::string_view(v, static_cast<std::size_t>(p - v));
        skip_ws();
        if (p == end) return std::nullopt;
        if (*p == '}') return found;
        if (*p != ',') return std::nullopt;
        ++p;
    }
}
} // namespace detail

// ---- client frames -----------------------------------------------------------------------

/// A request from a client, parsed.
struct request {
    enum class kind { subscribe, unsubscribe, publish, pong, refresh, presence } type = kind::pong;
    std::string channel;           ///< subscribe, unsubscribe, publish, presence
    std::optional<position> since; ///< subscribe: resume after this position
    std::string data;              ///< publish: the JSON value, its bytes as the client sent them
    std::uint64_t id = 0;          ///< optional request id, echoed in the answer
    std::string token;             ///< refresh: the client's new credentials
};

/// Parses one client text frame. On failure `ec` is malformed_frame (nesting deeper than
/// max_frame_depth included), unknown_frame_type or invalid_channel, and `id` (when the
/// frame carried a readable one) is left in the result so that the error frame can name
/// the request. `implied`, when given, is the type of a frame that has no `type` member
/// (`POST /herald/publish` bodies may leave it out).
inline request parse_request(std::string_view text, std::error_code& ec,
                             std::optional<request::kind> implied = std::nullopt) {
    ec.clear();
    request r;
    // Before nlohmann builds anything: a deep value would make its recursive dump() (an
    // error message, a log line) overflow the stack.
    if (!herald::detail::json_depth_within(text, max_frame_depth)) { ec = error::malformed_frame; return r; }
    nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object()) { ec = error::malformed_frame; return r; }
    if (auto it = j.find("id"); it != j.end()) {
        if (!it->is_number_unsigned()) { ec = error::malformed_frame; return r; }
        r.id = it->get<std::uint64_t>();
    }
    auto type = j.find("type");
    if (type == j.end() && implied) {
        r.type = *implied;
        if (r.type == request::kind::pong) return r;
    } else {
        if (type == j.end() || !type->is_string()) { ec = error::malformed_frame; return r; }
        const std::string& t = type->get_ref<const std::string&>();
        if (t == "pong" || t == "ping") { r.type = request::kind::pong; return r; }
        if (t == "subscribe") r.type = request::kind::subscribe;
        else if (t == "unsubscribe") r.type = request::kind::unsubscribe;
        else if (t == "publish") r.type = request::kind::publish;
        else if (t == "refresh") r.type = request::kind::refresh;
        else if (t == "presence") r.type = request::kind::presence;  // herald.v2: peer::apply refuses it on v1
        else { ec = error::unknown_frame_type; return r; }
    }

    if (r.type == request::kind::refresh) {
        auto token = j.find("token");
        if (token == j.end() || !token->is_string()) { ec = error::malformed_frame; return r; }
        r.token = token->get<std::string>();
        return r;
    }

    auto ch = j.find("channel");
    if (ch == j.end() || !ch->is_string()) { ec = error::malformed_frame; return r; }
    r.channel = ch->get<std::string>();
    if (auto e = validate_channel(r.channel)) { ec = e; return r; }

    if (r.type == request::kind::subscribe) {
        if (auto s = j.find("since"); s != j.end()) {
            r.since = parse_cursor(*s, ec);
            if (ec) return r;
        }
    } else if (r.type == request::kind::publish) {
        // The value's bytes, not nlohmann's re-serialization of it: no recursive dump() of
        // client data (the hub checks the payload, as for a server-side publish), and the
        // payload reaches subscribers as the publisher wrote it.
        if (j.find("data") == j.end()) { ec = error::malformed_frame; return r; }
        std::optional<std::string_view> d = detail::member_bytes(text, "data");
        if (!d) { ec = error::malformed_frame; return r; }
        r.data = std::string(*d);
    }
    return r;
}

/// One channel of a long poll: its name, and the cursor to resume after (none: from now).
struct poll_channel {
    std::string name;                ///< as sent: the hub validates it at subscribe
    std::optional<position> since;
    std::error_code error;           ///< malformed_frame: the cursor is neither {epoch, offset} nor null
};

/// A long-poll body, parsed: `{"channels": {"<name>": cursor or null, ...}, "timeout": ms}`.
struct poll_request {
    std::vector<poll_channel> channels;               ///< in name order (as nlohmann keeps them)
    std::optional<std::chrono::milliseconds> timeout;  ///< when sent: clamped to [0, max_timeout]
    std::vector<std::string> protocols;  ///< the versions the client offered (none: herald.v1)
    std::string_view problem;                          ///< on failure: what is wrong, for the answer
};

/// The most protocol names a poll may offer (a client offers the few it speaks).
inline constexpr std::size_t max_offered_protocols = 8;

/// Parses a long-poll body (docs/protocol.md). A `timeout` above `max_timeout` (the
/// transport's longest hold) is clamped to it before any conversion, so that no value can
/// overflow into a poll held forever. On failure `ec` is malformed_frame and `problem` says
/// why; a bad cursor fails only its channel (poll_channel::error).
inline poll_request parse_poll(std::string_view body, std::error_code& ec,
                               std::chrono::milliseconds max_timeout = std::chrono::hours(24)) {
    ec.clear();
    poll_request p;
    auto fail = [&](std::string_view why) {
        ec = error::malformed_frame;
        p.problem = why;
        p.channels.clear();
        return std::move(p);
    };
    if (!herald::detail::json_depth_within(body, max_frame_depth)) return fail("the body nests too deep");
    const nlohmann::json j = nlohmann::json::parse(body, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return fail("the body must be a JSON object");
    auto channels = j.find("channels");
    if (channels == j.end() || !channels->is_object()) return fail("`channels` must be an object");
    if (auto t = j.find("timeout"); t != j.end()) {
        if (!t->is_number_unsigned()) return fail("`timeout` must be a number of milliseconds");
        const auto limit = static_cast<std::uint64_t>(std::max<std::chrono::milliseconds::rep>(max_timeout.count(), 0));
        p.timeout = std::chrono::milliseconds(static_cast<std::chrono::milliseconds::rep>(
            std::min(t->get<std::uint64_t>(), limit)));
    }
    if (auto o = j.find("protocols"); o != j.end()) {
        if (!o->is_array() || o->size() > max_offered_protocols)
            return fail("`protocols` must be an array of at most 8 protocol names");
        for (const auto& name : *o) {
            if (!name.is_string()) return fail("`protocols` must be an array of at most 8 protocol names");
            p.protocols.push_back(name.get<std::string>());
        }
    }
    p.channels.reserve(channels->size());
    for (const auto& [name, cursor] : channels->items()) {
        poll_channel c{name, std::nullopt, {}};
        c.since = parse_cursor(cursor, c.error);
        p.channels.push_back(std::move(c));
    }
    return p;
}

} // namespace protocol
} // namespace herald

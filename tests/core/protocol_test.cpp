// herald.v1 as it goes over the wire: channel names, error codes and their wire names, the
// frames a server sends and the requests a client sends (docs/protocol.md).
#include <herald.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <string>
#include <vector>

using namespace std::chrono_literals;
using json = nlohmann::json;

TEST_CASE("channel names: valid ones pass, every invalid one gets error::invalid_channel") {
    for (const char* ok : {"projects", "project.42.items", "user.alice.notifications", "a", "A-b_c:d.e", "x.1"})
        CHECK_FALSE(herald::validate_channel(ok));
    const std::string too_long(herald::max_channel_length + 1, 'a');
    for (std::string bad : {std::string(), std::string("."), std::string("a."), std::string(".a"),
                            std::string("a..b"), std::string("has space"), std::string("quote\""),
                            std::string("back\\slash"), std::string("slash/"), std::string("star*"),
                            std::string("\xc3\xa9t\xc3\xa9"), std::string("nul\0x", 5), too_long}) {
        INFO("channel: " << bad);
        CHECK(herald::validate_channel(bad) == herald::error::invalid_channel);
    }
    CHECK(herald::is_valid_channel(std::string(herald::max_channel_length, 'a')));
}

TEST_CASE("errors: herald's category names each code, wire names are snake_case") {
    std::error_code ec = herald::error::slow_consumer;
    CHECK(ec.category().name() == std::string("herald"));
    CHECK(ec.message() == "slow consumer: outbound queue over its cap");
    CHECK(std::string(herald::to_wire(ec)) == "slow_consumer");
    CHECK(std::string(herald::to_wire(std::make_error_code(std::errc::io_error))) == "internal_error");
    for (int e = 1; e <= static_cast<int>(herald::error::timed_out); ++e) {
        const auto code = static_cast<herald::error>(e);
        CHECK(std::string(herald::to_wire(code)) != "internal_error");
        CHECK(herald::make_error_code(code).message() != "unknown herald error");
    }
}

TEST_CASE("protocol: server frames are valid JSON with the documented fields") {
    auto m = herald::protocol::make_message("project.7", {"ep0ch", 42}, R"({"title":"Launch \"v2\"","n":[1,2]})");
    json j = json::parse(m->text);
    CHECK(j["type"] == "message");
    CHECK(j["channel"] == "project.7");
    CHECK(j["epoch"] == "ep0ch");
    CHECK(j["offset"] == 42);
    CHECK(j["data"]["title"] == "Launch \"v2\"");
    CHECK(m->data() == R"({"title":"Launch \"v2\"","n":[1,2]})");

    json s = json::parse(herald::protocol::make_subscribed("c", {"e", 3}, false, 9)->text);
    CHECK(s == json({{"type", "subscribed"}, {"channel", "c"}, {"epoch", "e"}, {"offset", 3}, {"recovered", false}, {"id", 9}}));

    auto err = herald::protocol::make_error(herald::error::forbidden, "user.bob.x", 4);
    json e = json::parse(err->text);
    CHECK(e["type"] == "error");
    CHECK(e["code"] == "forbidden");
    CHECK(e["channel"] == "user.bob.x");
    CHECK(e["id"] == 4);
    CHECK(err->data() == "forbidden");
    // A channel that is not a valid name is never echoed (it could carry anything).
    CHECK_FALSE(json::parse(herald::protocol::make_error(herald::error::invalid_channel, "bad\"name")->text).contains("channel"));

    json w = json::parse(herald::protocol::make_welcome("s1", 25s, {"websocket", "longpoll"}, "srv")->text);
    CHECK(w["protocol"] == "herald.v1");
    CHECK(w["heartbeat"] == 25000);
    CHECK(w["transports"] == json({"websocket", "longpoll"}));
    json r = json::parse(herald::protocol::make_reconnect(1500ms)->text);
    CHECK(r == json({{"type", "reconnect"}, {"after", 1500}, {"reason", "shutdown"}}));
    CHECK(json::parse(herald::protocol::make_published("c", {"e", 5}, 2)->text)["offset"] == 5);
    CHECK(json::parse(herald::protocol::make_unsubscribed("c", 3)->text)["type"] == "unsubscribed");
}

TEST_CASE("protocol: versions: the newest both know, herald.v1 without an offer, none for an offer of strangers") {
    using herald::protocol::negotiate;
    using v = std::vector<std::string>;
    CHECK(negotiate(v{"herald.v2", "herald.v1"}) == 2);
    CHECK(negotiate(v{"herald.v1", "herald.v2"}) == 2);
    CHECK(negotiate(v{"herald.v1"}) == 1);
    CHECK(negotiate(v{}) == 1);                        // a client from before the negotiation
    CHECK(negotiate(v{"herald.v2", "herald.v1"}, 1) == 1);  // a server pinned to v1
    CHECK(negotiate(v{"herald.v2"}, 1) == 0);
    CHECK(negotiate(v{"herald.v9", "chat", ""}) == 0);
    CHECK(negotiate(v{"HERALD.V2", "herald.v1"}) == 1);  // names are exact, as subprotocols are
    CHECK(herald::protocol::spoken() == "herald.v2, herald.v1");
    CHECK(herald::protocol::spoken(1) == "herald.v1");
    CHECK(json::parse(herald::protocol::make_welcome("s1", 25s, {}, "", 2)->text)["protocol"] == "herald.v2");

    std::error_code ec;
    auto p = herald::protocol::parse_poll(R"({"channels":{},"protocols":["herald.v2","herald.v1"]})", ec);
    CHECK_FALSE(ec);
    CHECK(p.protocols == v{"herald.v2", "herald.v1"});
    for (const char* bad : {R"({"channels":{},"protocols":"herald.v2"})", R"({"channels":{},"protocols":[2]})",
                            R"({"channels":{},"protocols":["a","b","c","d","e","f","g","h","i"]})"}) {
        herald::protocol::parse_poll(bad, ec);
        CHECK(ec == herald::error::malformed_frame);
    }
}

TEST_CASE("protocol: client requests parse, and each bad one gets its error") {
    std::error_code ec;
    auto r = herald::protocol::parse_request(R"({"type":"subscribe","channel":"p","since":{"epoch":"e","offset":7},"id":3})", ec);
    REQUIRE_FALSE(ec);
    CHECK(r.type == herald::protocol::request::kind::subscribe);
    CHECK(r.channel == "p");
    REQUIRE(r.since);
    CHECK(*r.since == herald::position{"e", 7});
    CHECK(r.id == 3);

    // The payload is the bytes the client sent (the hub checks them as any payload), the last
    // one when `data` repeats, as nlohmann keeps it; an escaped key is the same key.
    r = herald::protocol::parse_request(R"({"type":"publish","channel":"p","data":{"a" : [1, "}"]} })", ec);
    REQUIRE_FALSE(ec);
    CHECK(r.data == R"({"a" : [1, "}"]})");
    r = herald::protocol::parse_request(R"({"data":1,"type":"publish","channel":"p","d\u0061ta":"x\"y"})", ec);
    REQUIRE_FALSE(ec);
    CHECK(r.data == R"("x\"y")");

    struct bad_case { const char* text; herald::error expected; };
    for (auto [text, expected] : {
             bad_case{"not json", herald::error::malformed_frame},
             bad_case{"[1,2]", herald::error::malformed_frame},
             bad_case{"{\"channel\":\"p\"}", herald::error::malformed_frame},
             bad_case{"{\"type\":7}", herald::error::malformed_frame},
             bad_case{"{\"type\":\"dance\"}", herald::error::unknown_frame_type},
             bad_case{"{\"type\":\"subscribe\"}", herald::error::malformed_frame},
             bad_case{"{\"type\":\"subscribe\",\"channel\":\"bad name\"}", herald::error::invalid_channel},
             bad_case{"{\"type\":\"subscribe\",\"channel\":\"p\",\"since\":{\"epoch\":\"e\"}}", herald::error::malformed_frame},
             bad_case{"{\"type\":\"subscribe\",\"channel\":\"p\",\"since\":{\"epoch\":\"e\",\"offset\":-1}}", herald::error::malformed_frame},
             bad_case{"{\"type\":\"subscribe\",\"channel\":\"p\",\"id\":\"x\"}", herald::error::malformed_frame},
             bad_case{"{\"type\":\"publish\",\"channel\":\"p\"}", herald::error::malformed_frame},
         }) {
        INFO(text);
        herald::protocol::parse_request(text, ec);
        CHECK(ec == expected);
    }
    herald::protocol::parse_request(R"({"type":"pong"})", ec);
    CHECK_FALSE(ec);
}

namespace {
std::string nested(std::size_t depth, std::string_view inner = "1") {
    return std::string(depth, '[') + std::string(inner) + std::string(depth, ']');
}
std::string publish_frame(const std::string& data) {
    return R"({"type":"publish","channel":"p","data":)" + data + "}";
}
} // namespace

TEST_CASE("nesting depth: an 80k-deep client frame is malformed_frame, a payload invalid_payload, no crash") {
    const std::size_t deep = 80000;
    std::error_code ec;
    herald::protocol::parse_request(nested(deep), ec);
    CHECK(ec == herald::error::malformed_frame);
    herald::protocol::parse_request(publish_frame(nested(deep)), ec);
    CHECK(ec == herald::error::malformed_frame);
    // Brackets inside strings are not nesting; escaped quotes do not end a string.
    herald::protocol::parse_request(publish_frame("\"" + std::string(deep, '[') + "\\\"\""), ec);
    CHECK_FALSE(ec);
    herald::protocol::parse_request(publish_frame("[\"\\\\\"" + std::string(deep, '[') + "]"), ec);
    CHECK(ec == herald::error::malformed_frame);

    // Through the hub, as a transport applies it: an error frame, the session goes on.
    herald::hub_options opts;
    opts.max_payload_bytes = 1 << 20;
    herald::hub hub(opts);
    herald::peer client(hub, {}, [] {});
    CHECK(client.apply(publish_frame(nested(deep))) == herald::error::malformed_frame);
    CHECK(client.apply(nested(deep, "{\"type\":\"pong\"}")) == herald::error::malformed_frame);
    std::vector<herald::frame_ptr> frames;
    client.session()->take(frames);
    REQUIRE(frames.size() == 2);
    CHECK(frames[0]->code == herald::error::malformed_frame);

    hub.publish("p", nested(deep), ec);
    CHECK(ec == herald::error::invalid_payload);
    hub.publish("p", std::string(deep, '{'), ec);
    CHECK(ec == herald::error::invalid_payload);
    CHECK_FALSE(herald::detail::is_json_value(nested(deep)));
}

TEST_CASE("nesting depth: exactly max_json_depth is accepted, one more is not") {
    constexpr std::size_t limit = herald::detail::max_json_depth;
    CHECK(herald::detail::is_json_value(nested(limit)));
    CHECK(herald::detail::is_json_value(nested(limit - 1, "[]")));
    CHECK(herald::detail::is_json_value(nested(limit - 1, "{}")));
    CHECK_FALSE(herald::detail::is_json_value(nested(limit + 1)));
    CHECK_FALSE(herald::detail::is_json_value(nested(limit, "[]")));
    CHECK_FALSE(herald::detail::is_json_value(nested(limit, "{}")));
    std::string objects;
    for (std::size_t i = 0; i < limit; ++i) objects += "{\"k\":";
    CHECK(herald::detail::is_json_value(objects + "1" + std::string(limit, '}')));
    CHECK_FALSE(herald::detail::is_json_value(objects + "[1]" + std::string(limit, '}')));

    herald::hub hub;
    hub.set_authorizer(herald::insecure_allow_all{});  // the client publish below is let through
    std::error_code ec;
    hub.publish("p", nested(limit), ec);
    CHECK_FALSE(ec);
    hub.publish("p", nested(limit + 1), ec);
    CHECK(ec == herald::error::invalid_payload);

    // A client frame may carry a payload as deep as the server may publish.
    auto r = herald::protocol::parse_request(publish_frame(nested(limit)), ec);
    REQUIRE_FALSE(ec);
    CHECK(r.data == nested(limit));
    herald::protocol::parse_request(publish_frame(nested(limit + 1)), ec);
    CHECK(ec == herald::error::malformed_frame);
    herald::peer client(hub, {}, [] {});
    CHECK(client.apply(publish_frame(nested(limit))) == std::error_code{});
    std::vector<herald::frame_ptr> frames;
    client.session()->take(frames);
    REQUIRE(frames.size() == 1);
    CHECK(frames[0]->type == herald::frame_type::published);
}

TEST_CASE("long-poll body: channels with cursors, per-channel errors, the timeout clamped") {
    std::error_code ec;
    auto p = herald::protocol::parse_poll(
        R"({"channels":{"b":{"epoch":"e","offset":3},"a":null,"c":{"epoch":"e"},"d":[1]},"timeout":1500})", ec,
        25000ms);
    REQUIRE_FALSE(ec);
    REQUIRE(p.channels.size() == 4);
    CHECK(p.channels[0].name == "a");
    CHECK_FALSE(p.channels[0].since);
    CHECK_FALSE(p.channels[0].error);
    CHECK(p.channels[1].name == "b");
    REQUIRE(p.channels[1].since);
    CHECK(*p.channels[1].since == herald::position{"e", 3});
    CHECK(p.channels[2].error == herald::error::malformed_frame);
    CHECK(p.channels[3].error == herald::error::malformed_frame);
    REQUIRE(p.timeout);
    CHECK(*p.timeout == 1500ms);

    // A timeout past the longest hold, even past what std::chrono::milliseconds holds, is the
    // longest hold: it must not wrap into a negative or endless hold.
    p = herald::protocol::parse_poll(R"({"channels":{},"timeout":18230571291595767808})", ec, 25000ms);
    REQUIRE_FALSE(ec);
    REQUIRE(p.timeout);
    CHECK(*p.timeout == 25000ms);
    p = herald::protocol::parse_poll(R"({"channels":{},"timeout":18446744073709551615})", ec);
    REQUIRE_FALSE(ec);
    REQUIRE(p.timeout);
    CHECK(*p.timeout == std::chrono::hours(24));
    p = herald::protocol::parse_poll(R"({"channels":{}})", ec);
    REQUIRE_FALSE(ec);
    CHECK_FALSE(p.timeout);

    for (const char* bad : {"", "[]", R"({"channels":[]})", R"({"timeout":5})", R"({"channels":{},"timeout":-1})",
                            R"({"channels":{},"timeout":1.5})", R"({"channels":{},"timeout":18446744073709551616})",
                            R"({"channels":{},"timeout":"5"})"}) {
        INFO(bad);
        p = herald::protocol::parse_poll(bad, ec);
        CHECK(ec == herald::error::malformed_frame);
        CHECK_FALSE(p.problem.empty());
    }
    p = herald::protocol::parse_poll(R"({"channels":{"a":)" + nested(80000) + "}}", ec);
    CHECK(ec == herald::error::malformed_frame);
}
